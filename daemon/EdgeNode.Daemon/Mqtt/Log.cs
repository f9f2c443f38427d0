using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>Log messages of the MQTT feature (event ids 100-199).</summary>
internal static partial class Log
{
    [LoggerMessage(100, LogLevel.Information, "Embedded MQTT broker listening on 127.0.0.1:{Port}")]
    public static partial void EmbeddedBrokerStarted(ILogger logger, int port);

    [LoggerMessage(101, LogLevel.Information, "Connected to MQTT broker {Host}:{Port} as {ClientId} (MQTT {Version}, session present: {SessionPresent})")]
    public static partial void Connected(ILogger logger, string host, int port, string clientId, string version, bool sessionPresent);

    [LoggerMessage(102, LogLevel.Warning, "Cannot connect to MQTT broker {Host}:{Port}: {Reason}; retrying with backoff")]
    public static partial void ConnectFailed(ILogger logger, string host, int port, string reason);

    [LoggerMessage(103, LogLevel.Warning, "Disconnected from MQTT broker: {Reason}")]
    public static partial void Disconnected(ILogger logger, string reason);

    [LoggerMessage(104, LogLevel.Information, "Subscribed to {Topic} at QoS 1")]
    public static partial void Subscribed(ILogger logger, string topic);

    [LoggerMessage(105, LogLevel.Information, "Broker refused shared subscription {Topic} ({Code}); subscribing to the plain topic instead")]
    public static partial void SharedSubscriptionRefused(ILogger logger, string topic, string code);

    [LoggerMessage(106, LogLevel.Warning, "MQTT ping failed; reconnecting")]
    public static partial void PingFailed(ILogger logger);

    [LoggerMessage(107, LogLevel.Warning, "Publishing the node status failed: {Reason}")]
    public static partial void StatusPublishFailed(ILogger logger, string reason);

    [LoggerMessage(108, LogLevel.Error, "MQTT broker {Host}:{Port} refused the credentials of user '{Username}' ({Reason}): check Mqtt:Username and Mqtt:Password (or the broker's password file / ACL); retrying with backoff")]
    public static partial void CredentialsRefused(ILogger logger, string host, int port, string username, string reason);
}
