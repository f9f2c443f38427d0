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

    /// <summary>
    /// Overwrites with random bytes (fixed seed) the first index page (LiteDB page type 3 at byte 4 of the page header)
    /// that holds <paramref name="storedId"/> as a key: the jobs collection's <c>_id</c> index, created before the running
    /// collection's. Start-up reads none of its pages when no job is queued, running or offloaded; looking a stored id up
    /// fails with LiteDB code 999. Returns the file's new content.
    /// </summary>
    public static byte[] OverwriteJobsIdIndexPage(string databasePath, string storedId)
    {
        const byte IndexPageType = 3;
        var bytes = File.ReadAllBytes(databasePath);
        var key = Encoding.UTF8.GetBytes(storedId);
        for (var page = 1; page < bytes.Length / PageSize; page++)
        {
            var span = bytes.AsSpan(page * PageSize, PageSize);
            if (span[4] == IndexPageType && span.IndexOf(key) >= 0)
            {
                new Random(7).NextBytes(span);
                File.WriteAllBytes(databasePath, bytes);
                return bytes;
            }
        }

        throw new InvalidOperationException($"No index page of {databasePath} holds '{storedId}'.");
    }
}
