using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>Log messages of the IoT Hub feature (event ids 1600-1699). No message carries a key or a token.</summary>
internal static partial class IoTHubLog
{
    [LoggerMessage(1600, LogLevel.Information, "Connected to IoT Hub {Host}:{Port} as device {DeviceId} over {Transport} (credentials valid until {Expiry})")]
    public static partial void Connected(ILogger logger, string host, int port, string deviceId, string transport, string expiry);

    [LoggerMessage(1601, LogLevel.Warning, "Cannot connect to IoT Hub {Host}:{Port}: {Reason}; retrying in {DelayMs:F0} ms")]
    public static partial void ConnectFailed(ILogger logger, string host, int port, string reason, double delayMs);

    [LoggerMessage(1602, LogLevel.Warning, "Disconnected from IoT Hub: {Reason}")]
    public static partial void Disconnected(ILogger logger, string reason);

    [LoggerMessage(1603, LogLevel.Warning, "IoT Hub ping failed; reconnecting")]
    public static partial void PingFailed(ILogger logger);

    [LoggerMessage(1604, LogLevel.Information, "IoT Hub SAS token nears expiry; reconnecting with a fresh one")]
    public static partial void RenewingToken(ILogger logger);

    [LoggerMessage(1605, LogLevel.Warning, "IoT Hub sent a message on an unexpected topic {Topic}")]
    public static partial void UnexpectedTopic(ILogger logger, string topic);

    [LoggerMessage(1606, LogLevel.Information, "Desired properties $version {Version} applied: {Applied}")]
    public static partial void DesiredApplied(ILogger logger, long version, string applied);

    [LoggerMessage(1607, LogLevel.Warning, "Desired properties $version {Version} rejected, nothing applied: {Errors}")]
    public static partial void DesiredRejected(ILogger logger, long version, string errors);

    [LoggerMessage(1608, LogLevel.Warning, "Twin request failed: {Reason}; retrying in {DelayMs:F0} ms")]
    public static partial void TwinRetry(ILogger logger, string reason, double delayMs);

    [LoggerMessage(1609, LogLevel.Warning, "Twin synchronisation failed: {Reason}; it is retried on the next connect or change")]
    public static partial void TwinFailed(ILogger logger, string reason);

    [LoggerMessage(1610, LogLevel.Information, "Direct method {Method} answered {Status}")]
    public static partial void MethodAnswered(ILogger logger, string method, int status);

    [LoggerMessage(1611, LogLevel.Warning, "Could not answer direct method {Method}: {Reason}")]
    public static partial void MethodResponseFailed(ILogger logger, string method, string reason);

    [LoggerMessage(1612, LogLevel.Warning, "Telemetry not sent: {Reason}")]
    public static partial void TelemetryFailed(ILogger logger, string reason);

    [LoggerMessage(1613, LogLevel.Warning, "Operator request: {Action}")]
    public static partial void OperatorAction(ILogger logger, string action);
}
