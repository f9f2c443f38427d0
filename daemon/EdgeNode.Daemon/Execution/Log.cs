using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Execution;

/// <summary>Log messages of the execution feature (event ids 300-399).</summary>
internal static partial class Log
{
    [LoggerMessage(300, LogLevel.Information, "No Inference:ModelPath configured: using the synthesized tiny INT8 demonstration model {Path} (random weights: its text is not meaningful; see README for a real GPT-2)")]
    public static partial void DemoModel(ILogger logger, string path);

    [LoggerMessage(302, LogLevel.Information, "Job {JobId} {Status} ({Detail})")]
    public static partial void JobFinished(ILogger logger, string jobId, string status, string detail);

    [LoggerMessage(303, LogLevel.Error, "Job {JobId} failed with an internal error")]
    public static partial void JobCrashed(ILogger logger, Exception exception, string jobId);

    [LoggerMessage(310, LogLevel.Warning, "Execution paused (Execution:Paused=true): jobs are accepted and queued but none runs; {Queued} queued now")]
    public static partial void ExecutionPaused(ILogger logger, int queued);

    [LoggerMessage(304, LogLevel.Information, "Job {JobId} started (attempt {Attempt})")]
    public static partial void JobStarted(ILogger logger, string jobId, int attempt);

    [LoggerMessage(305, LogLevel.Warning, "{Count} token events of job {JobId} were not published (the first failed: {Reason}); its final event is in the outbox")]
    public static partial void TokenPublishFailed(ILogger logger, string jobId, int count, string reason);

    [LoggerMessage(307, LogLevel.Warning, "The job store is unavailable ({Reason}); retrying")]
    public static partial void StoreUnavailable(ILogger logger, string reason);

    [LoggerMessage(315, LogLevel.Error, "Job {JobId} ended {Status} but its outcome was not recorded: the job store was found corrupt while it ran and moved aside, and the job was lost with it")]
    public static partial void OutcomeLost(ILogger logger, string jobId, string status);

    [LoggerMessage(311, LogLevel.Information, "Model reload: loading {Path} while the current model keeps serving")]
    public static partial void ModelReloading(ILogger logger, string path);

    [LoggerMessage(312, LogLevel.Warning, "Model reload refused, the current model keeps serving: {Reason}")]
    public static partial void ModelReloadRefused(ILogger logger, string reason);

    [LoggerMessage(313, LogLevel.Information, "Model swapped between jobs: {Previous} -> {Path} on {ExecutionProvider} ({Precision})")]
    public static partial void ModelSwapped(ILogger logger, string previous, string path, string executionProvider, string precision);

    [LoggerMessage(314, LogLevel.Debug, "Native heap trimmed after {Stage}: memory returned to the kernel = {Released}")]
    public static partial void NativeHeapTrimmed(ILogger logger, string stage, bool released);
}
