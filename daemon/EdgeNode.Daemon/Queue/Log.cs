using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Queue;

/// <summary>Log messages of the durable job store. Event ids 1100-1199 belong to the Queue feature.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1100, Level = LogLevel.Information,
        Message = "Job store opened at {DatabasePath}: {QueuedJobs} queued, {InterruptedJobs} interrupted, {OutboxEntries} undelivered outbox entries")]
    public static partial void StoreOpened(ILogger logger, string databasePath, int queuedJobs, int interruptedJobs, int outboxEntries);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Error,
        Message = "Job store {DatabasePath} is unreadable; moved its files to {QuarantinePath} and started an empty store")]
    public static partial void StoreQuarantined(ILogger logger, Exception exception, string databasePath, string quarantinePath);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Warning,
        Message = "Re-queued {Count} jobs that were IN_PROGRESS when the previous process stopped")]
    public static partial void JobsRequeued(ILogger logger, int count);

    [LoggerMessage(EventId = 1103, Level = LogLevel.Warning,
        Message = "Job store I/O error; the database will be reopened on the next call")]
    public static partial void StoreIoError(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1104, Level = LogLevel.Warning,
        Message = "Closing the job store database failed")]
    public static partial void StoreCloseFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1105, Level = LogLevel.Information,
        Message = "Purged {Count} finished jobs older than {Cutoff}")]
    public static partial void FinishedJobsPurged(ILogger logger, int count, DateTimeOffset cutoff);

    [LoggerMessage(EventId = 1106, Level = LogLevel.Warning,
        Message = "Directory fsync of {DirectoryPath} failed with errno {Errno}; new files may not survive a power loss")]
    public static partial void DirectorySyncFailed(ILogger logger, string directoryPath, int errno);

    [LoggerMessage(EventId = 1107, Level = LogLevel.Error,
        Message = "Job store {DatabasePath} is corrupt (found while running); moved its files to {QuarantinePath} and started an empty store. Lost with the moved file: {QueuedJobs} queued, {OffloadedJobs} offloaded and {RunningJobs} running job(s), each answered with a FAILED storage_error outcome so its sender can resubmit it, and the finished jobs kept for duplicate detection")]
    public static partial void StoreQuarantinedAtRuntime(ILogger logger, Exception exception, string databasePath, string quarantinePath, int queuedJobs, int offloadedJobs, int runningJobs);

    [LoggerMessage(EventId = 1108, Level = LogLevel.Error,
        Message = "Job store {DatabasePath} is corrupt (found while running) but could not be moved aside or replaced; retrying at the next call")]
    public static partial void RuntimeQuarantineFailed(ILogger logger, Exception exception, string databasePath);

    [LoggerMessage(EventId = 1109, Level = LogLevel.Warning,
        Message = "Answered {Count} job(s) lost with the corrupt job store with storage_error (first ids: {Ids})")]
    public static partial void LostJobsAnswered(ILogger logger, int count, string ids);
}
