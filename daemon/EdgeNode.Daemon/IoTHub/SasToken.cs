using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>
/// IoT Hub shared access signatures, as documented in "Control access to IoT Hub with shared access signatures"
/// (learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas):
/// <c>SharedAccessSignature sr={UrlEncode(resource)}&amp;sig={UrlEncode(Base64(HMACSHA256(Base64Decode(key),
/// UrlEncode(resource) + "\n" + expiry)))}&amp;se={expiry}</c>, with the expiry in Unix seconds (UTC) and, for a
/// device, the resource <c>{host}/devices/{deviceId}</c>. URL encoding is <c>Uri.EscapeDataString</c>
/// (RFC 3986 unreserved characters kept; the Azure SDKs' <c>WebUtility.UrlEncode</c> differs only in
/// upper/lower-case hex, which the service accepts, and in '+' for spaces, which never occur in a host/device path).
/// </summary>
internal static class SasToken
{
    /// <summary>Builds a device SAS token. Pure: same inputs, same token.</summary>
    /// <param name="resourceUri">The resource, e.g. <c>myhub.azure-devices.net/devices/dev1</c> (not yet URL-encoded).</param>
    /// <param name="base64Key">The device's shared access key (Base64, as in the connection string).</param>
    /// <param name="expiryUnixSeconds">Expiry, seconds since 1970-01-01 UTC.</param>
    /// <exception cref="FormatException">The key is not valid Base64.</exception>
    public static string Create(string resourceUri, string base64Key, long expiryUnixSeconds)
    {
        ArgumentNullException.ThrowIfNull(resourceUri);
        ArgumentNullException.ThrowIfNull(base64Key);
        var encodedResource = Uri.EscapeDataString(resourceUri);
        var expiry = expiryUnixSeconds.ToString(CultureInfo.InvariantCulture);
        var signature = Sign(Convert.FromBase64String(base64Key), encodedResource + "\n" + expiry);
        return "SharedAccessSignature sr=" + encodedResource + "&sig=" + Uri.EscapeDataString(signature) + "&se=" + expiry;
    }

    /// <summary>Base64(HMAC-SHA256(key, UTF-8(stringToSign))).</summary>
    public static string Sign(byte[] key, string stringToSign) =>
        Convert.ToBase64String(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(stringToSign)));

    /// <summary>The device resource <c>{host}/devices/{deviceId}</c> that a device token signs.</summary>
    public static string DeviceResource(string hostName, string deviceId) => hostName + "/devices/" + deviceId;
}
