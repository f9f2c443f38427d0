namespace EdgeNode.CloudRelay;

/// <summary>Log messages of the relay (event ids 1000-1099). Tokens and keys never appear in them.</summary>
internal static partial class Log
{
    [LoggerMessage(1000, LogLevel.Information, "Relay listening on {Urls} (backend {Backend}, {Devices} devices)")]
    public static partial void Listening(ILogger logger, string urls, string backend, int devices);

    [LoggerMessage(1001, LogLevel.Warning, "No device is configured (Relay:Devices): every job request will be refused with 401")]
    public static partial void NoDevices(ILogger logger);

    [LoggerMessage(1002, LogLevel.Information, "Embedded model {Path} loaded ({Sessions} sessions)")]
    public static partial void ModelLoaded(ILogger logger, string path, int sessions);

    [LoggerMessage(1003, LogLevel.Debug, "Job {JobId} finished: {Status}")]
    public static partial void JobFinished(ILogger logger, string jobId, string status);

    [LoggerMessage(1004, LogLevel.Error, "Job {JobId} crashed the relay's runner")]
    public static partial void JobCrashed(ILogger logger, Exception exception, string jobId);

    [LoggerMessage(1005, LogLevel.Warning, "Upstream completions call failed: {Reason}")]
    public static partial void UpstreamFailed(ILogger logger, string reason);
}
