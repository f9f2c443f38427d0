using System.Text;
using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Jobs;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Tests.Queue;

/// <summary>A settable clock (the store only reads UTC now).</summary>
internal sealed class ManualTimeProvider(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Keeps every log entry so tests can assert what was reported.</summary>
internal sealed class ListLogger : ILogger
{
    private readonly List<(LogLevel Level, EventId Id, string Message, Exception? Exception)> _entries = [];

    public IReadOnlyList<(LogLevel Level, EventId Id, string Message, Exception? Exception)> Entries
    {
        get
        {
            lock (_entries)
            {
                return [.. _entries];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_entries)
        {
            _entries.Add((logLevel, eventId, formatter(state, exception), exception));
        }
    }
}

internal static class Items
{
    public const string Node = "node-t";

    public static readonly DateTimeOffset Start = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);

    public static JobRequest Job(string id, int priority = 0, string prompt = "Hello, my name is") => new()
    {
        Id = id,
        Prompt = prompt,
        Priority = priority,
    };

    public static IngestItem Accept(JobRequest job, byte[]? correlation = null) => new(
        job, job.Id, "edgenode/results/" + job.Id, correlation, JobEvents.Accepted(job.Id, "local", Node), Start);

    public static IngestItem Accept(string id, int priority = 0) => Accept(Job(id, priority));

    public static IngestItem Reject(string id, string message = "prompt must not be empty") => new(
        null, id, "edgenode/results/" + id, null,
        JobEvents.Error(id, JobStatuses.Rejected, JobErrorCodes.InvalidRequest, message), Start);

    public static byte[] ResultEvent(string id) =>
        JobEvents.Result(id, " Alice ✓", "length", 5, 2, "local", Node, 1.25, 2.5, 3.75, 7.5);

    public static string Text(byte[] utf8) => Encoding.UTF8.GetString(utf8);
}

/// <summary>Corrupts one page in the middle of a closed <c>jobs.db</c>, as the newcomer did (durability case 3).</summary>
internal static class CorruptFiles
{
    public const int PageSize = 8192;

    // LiteDB 5 page header (BasePage): page type at byte 4, owning collection's page id (uint32) at byte 19.
    private const int PageTypeOffset = 4;
    private const int CollectionIdOffset = 19;
    private const byte IndexPageType = 3;
    private const byte DataPageType = 4;

    /// <summary>
    /// Overwrites with random bytes (fixed seed) the first index page that holds <paramref name="storedId"/> as a key:
    /// the jobs collection's <c>_id</c> index (created before the running collection's, whose keys are job ids too).
    /// Looking a stored id up then fails with LiteDB code 999 ("invalid segment position in index footer", "page type
    /// must be index page"); start-up walks this index, so it finds it. Returns the file's new content.
    /// </summary>
    public static byte[] OverwriteJobsIdIndexPage(string databasePath, string storedId) =>
        Overwrite(databasePath, (bytes, _) => JobsIdIndexPage(bytes, storedId));

    /// <summary>
    /// Overwrites with random bytes (fixed seed) the data page of the jobs collection that holds the document of
    /// <paramref name="storedId"/>. Start-up reads no document of a finished job; looking that id up while running
    /// fails with LiteDB code 999 ("Page type must be data page"). Returns the file's new content.
    /// </summary>
    public static byte[] OverwriteJobDataPage(string databasePath, string storedId) =>
        Overwrite(databasePath, (bytes, key) =>
        {
            var jobs = BitConverter.ToUInt32(bytes, (JobsIdIndexPage(bytes, storedId) * PageSize) + CollectionIdOffset);
            return FindPage(bytes, key, page => page[PageTypeOffset] == DataPageType
                && BitConverter.ToUInt32(page[CollectionIdOffset..]) == jobs);
        }, storedId);

    private static byte[] Overwrite(string databasePath, Func<byte[], byte[], int> findPage, string? id = null)
    {
        var bytes = File.ReadAllBytes(databasePath);
        var page = findPage(bytes, Encoding.UTF8.GetBytes(id ?? string.Empty));
        new Random(7).NextBytes(bytes.AsSpan(page * PageSize, PageSize));
        File.WriteAllBytes(databasePath, bytes);
        return bytes;
    }

    private static int JobsIdIndexPage(byte[] bytes, string storedId) =>
        FindPage(bytes, Encoding.UTF8.GetBytes(storedId), page => page[PageTypeOffset] == IndexPageType);

    private delegate bool PageTest(ReadOnlySpan<byte> page);

    private static int FindPage(byte[] bytes, byte[] key, PageTest test)
    {
        for (var page = 1; page < bytes.Length / PageSize; page++)
        {
            var span = bytes.AsSpan(page * PageSize, PageSize);
            if (test(span) && span.IndexOf(key) >= 0)
            {
                return page;
            }
        }

        throw new InvalidOperationException($"No matching page holds '{Encoding.UTF8.GetString(key)}'.");
    }
}
