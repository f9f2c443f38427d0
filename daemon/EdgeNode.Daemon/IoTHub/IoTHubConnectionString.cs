using EdgeNode.Shared.Offload;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>
/// A device connection string <c>HostName=..;DeviceId=..;SharedAccessKey=..</c> as shown by the Azure portal and
/// <c>az iot hub device-identity connection-string show</c>. <see cref="ToString"/> never includes the key.
/// </summary>
internal sealed record IoTHubConnectionString(string HostName, string DeviceId, string? SharedAccessKey)
{
    /// <summary>Parses a connection string; returns null and an error naming what is wrong (never the key) when invalid.</summary>
    public static IoTHubConnectionString? TryParse(string? text, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "the connection string is empty";
            return null;
        }

        var parts = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var segment in text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = segment.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                error = "a segment is not Name=Value";
                return null;
            }

            // Values may end in '=' (Base64 padding): split at the first '=' only.
            parts[segment[..eq].Trim()] = segment[(eq + 1)..].Trim();
        }

        if (!parts.TryGetValue("HostName", out var host) || host.Length == 0)
        {
            error = "HostName is missing";
            return null;
        }

        if (!parts.TryGetValue("DeviceId", out var device) || device.Length == 0)
        {
            error = "DeviceId is missing";
            return null;
        }

        if (device.IndexOfAny(['/', '+', '#']) >= 0)
        {
            error = "DeviceId must not contain '/', '+' or '#'";
            return null;
        }

        parts.TryGetValue("SharedAccessKey", out var key);
        if (key is { Length: > 0 })
        {
            if (!Convert.TryFromBase64String(key, new byte[key.Length], out _))
            {
                error = "SharedAccessKey is not valid Base64";
                return null;
            }
        }

        return new IoTHubConnectionString(host, device, string.IsNullOrEmpty(key) ? null : key);
    }

    /// <summary>The SAS resource of this device, <c>{HostName}/devices/{DeviceId}</c>.</summary>
    public string Resource => SharedAccessSignature.DeviceResource(HostName, DeviceId);

    /// <summary>
    /// The device SAS token (the MQTT password) valid until <paramref name="expiryUnixSeconds"/>, made by the one SAS
    /// implementation shared with the cloud relay (<see cref="SharedAccessSignature.Create"/>; DESIGN.md §7, Microsoft
    /// Learn "Control access to IoT Hub with shared access signatures"). Pure: same inputs, same token. Never log it.
    /// </summary>
    /// <param name="expiryUnixSeconds">Expiry, seconds since 1970-01-01 UTC.</param>
    /// <exception cref="InvalidOperationException">The connection string has no SharedAccessKey (X.509 authentication).</exception>
    public string CreateToken(long expiryUnixSeconds) =>
        SharedAccessSignature.Create(
            Resource,
            Convert.FromBase64String(SharedAccessKey ?? throw new InvalidOperationException("the connection string has no SharedAccessKey")),
            expiryUnixSeconds);

    /// <summary>The MQTT user name IoT Hub expects: <c>{HostName}/{DeviceId}/?api-version=2021-04-12</c>.</summary>
    public string UserName => HostName + "/" + DeviceId + "/?api-version=" + IoTHubTopics.ApiVersion;

    /// <summary>Without the key.</summary>
    public override string ToString() => "HostName=" + HostName + ";DeviceId=" + DeviceId + (SharedAccessKey is null ? "" : ";SharedAccessKey=***");
}
