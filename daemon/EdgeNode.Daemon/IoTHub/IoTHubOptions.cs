using System.ComponentModel.DataAnnotations;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>
/// Section <c>IoTHub</c> (DESIGN.md §7, §8): the Azure IoT Hub management link. Off unless
/// <see cref="ConnectionString"/> (or <see cref="ClientCertificateFile"/> with <see cref="HostName"/> and
/// <see cref="DeviceId"/>) is configured. The key is never logged.
/// </summary>
internal sealed class IoTHubOptions : IValidatableObject
{
    public const string Section = "IoTHub";

    /// <summary>Device connection string <c>HostName=..;DeviceId=..;SharedAccessKey=..</c>.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>X.509 authentication instead of SAS: PEM (with key, or see <see cref="ClientKeyFile"/>) or PKCS#12 file.</summary>
    public string? ClientCertificateFile { get; set; }

    /// <summary>PEM private key of <see cref="ClientCertificateFile"/> when kept apart.</summary>
    public string? ClientKeyFile { get; set; }

    /// <summary>Hub host name for X.509 authentication (e.g. <c>myhub.azure-devices.net</c>).</summary>
    public string? HostName { get; set; }

    /// <summary>Device id for X.509 authentication.</summary>
    public string? DeviceId { get; set; }

    /// <summary>MQTT port; default 8883 (TLS), or 443 with <see cref="UseWebSockets"/>.</summary>
    [Range(1, 65535)]
    public int? Port { get; set; }

    /// <summary>MQTT over WebSockets on 443 (path <c>/$iothub/websocket</c>), for networks that block 8883.</summary>
    public bool UseWebSockets { get; set; }

    /// <summary>PEM CA file to trust for the hub's certificate (tests, private clouds); default: the system store.</summary>
    public string? CaFile { get; set; }

    /// <summary>Lifetime of each SAS token, seconds; the link reconnects with a fresh token at 80% of it.</summary>
    [Range(5, 31 * 86_400)]
    public int TokenTtlSeconds { get; set; } = 3600;

    /// <summary>Seconds between telemetry D2C messages (also settable by the desired property <c>telemetryIntervalSeconds</c>).</summary>
    [Range(1, 86_400)]
    public int TelemetryIntervalSeconds { get; set; } = 300;

    /// <summary>MQTT keep-alive, seconds (IoT Hub allows at most 1177).</summary>
    [Range(5, 1177)]
    public int KeepAliveSeconds { get; set; } = 60;

    /// <summary>Largest reconnect backoff, seconds.</summary>
    [Range(1, 3600)]
    public int MaxBackoffSeconds { get; set; } = 60;

    /// <summary>First reconnect backoff, milliseconds (doubled with jitter up to <see cref="MaxBackoffSeconds"/>).</summary>
    [Range(10, 60_000)]
    public int InitialBackoffMilliseconds { get; set; } = 1000;

    /// <summary>True when the link is configured at all.</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(ConnectionString) || !string.IsNullOrWhiteSpace(ClientCertificateFile);

    /// <summary>The effective port.</summary>
    public int EffectivePort => Port ?? (UseWebSockets ? 443 : 8883);

    /// <summary>Checks the connection string (naming what is wrong, never echoing the key) and the certificate settings.</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!string.IsNullOrWhiteSpace(ConnectionString))
        {
            var parsed = IoTHubConnectionString.TryParse(ConnectionString, out var error);
            if (parsed is null)
            {
                yield return new ValidationResult("IoTHub:ConnectionString is invalid: " + error + ".", [nameof(ConnectionString)]);
            }
            else if (parsed.SharedAccessKey is null && string.IsNullOrWhiteSpace(ClientCertificateFile))
            {
                yield return new ValidationResult("IoTHub:ConnectionString has no SharedAccessKey and IoTHub:ClientCertificateFile is not set.", [nameof(ConnectionString)]);
            }
        }
        else if (!string.IsNullOrWhiteSpace(ClientCertificateFile))
        {
            if (string.IsNullOrWhiteSpace(HostName) || string.IsNullOrWhiteSpace(DeviceId))
            {
                yield return new ValidationResult("IoTHub:ClientCertificateFile needs IoTHub:HostName and IoTHub:DeviceId (or a ConnectionString without key).", [nameof(ClientCertificateFile)]);
            }
        }

        if (!string.IsNullOrWhiteSpace(ClientCertificateFile) && !File.Exists(ClientCertificateFile))
        {
            yield return new ValidationResult("IoTHub:ClientCertificateFile names a file that does not exist.", [nameof(ClientCertificateFile)]);
        }

        if (!string.IsNullOrWhiteSpace(CaFile) && !File.Exists(CaFile))
        {
            yield return new ValidationResult("IoTHub:CaFile names a file that does not exist.", [nameof(CaFile)]);
        }
    }

    /// <summary>Host and device id from the connection string, else from <see cref="HostName"/> / <see cref="DeviceId"/>.</summary>
    public IoTHubConnectionString Identity() =>
        !string.IsNullOrWhiteSpace(ConnectionString)
            ? IoTHubConnectionString.TryParse(ConnectionString, out _)!
            : new IoTHubConnectionString(HostName!, DeviceId!, null);
}
