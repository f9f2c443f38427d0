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
