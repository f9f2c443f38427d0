using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace EdgeNode.Shared.Offload;

/// <summary>A parsed SAS token: the fields of <c>SharedAccessSignature sr=..&amp;sig=..&amp;se=..[&amp;skn=..]</c>.</summary>
/// <param name="EncodedResource">The <c>sr</c> value exactly as sent (URL-encoded); the signature covers this text.</param>
/// <param name="Resource">The <c>sr</c> value URL-decoded, e.g. <c>edgenode-relay/devices/gw-7</c>.</param>
/// <param name="Signature">The <c>sig</c> value URL-decoded: Base64 of the HMAC-SHA256.</param>
/// <param name="Expiry">The <c>se</c> value: expiry in Unix seconds (UTC).</param>
/// <param name="KeyName">The optional <c>skn</c> value URL-decoded (EdgeNode: the device id), else null.</param>
public sealed record SasToken(string EncodedResource, string Resource, string Signature, long Expiry, string? KeyName);

/// <summary>Why a SAS token was refused (<see cref="SharedAccessSignature.Validate"/>).</summary>
public enum SasValidation
{
    /// <summary>Signature, expiry and resource are good.</summary>
    Valid,

    /// <summary>The <c>se</c> time has passed.</summary>
    Expired,

    /// <summary>The signature does not match the key (wrong key, or a field was changed after signing).</summary>
    BadSignature,

    /// <summary>The token was issued for another resource.</summary>
    WrongResource,
}

/// <summary>
/// Shared access signatures in the Azure IoT Hub format (DESIGN.md §7, notes/iothub.md), used between a
/// daemon and the cloud relay (DESIGN.md §6): <c>SharedAccessSignature sr={UrlEncode(resource)}&amp;sig={UrlEncode(sig)}&amp;se={expiry}[&amp;skn={keyName}]</c>
/// with sig = Base64(HMAC-SHA256(key, UrlEncode(resource) + "\n" + expiry)) and expiry in Unix seconds.
/// Source: Microsoft Learn, "Control access to IoT Hub with shared access signatures" (security token
/// structure). For the relay the resource is <c>{audience}/devices/{deviceId}</c> and <c>skn</c> names the device.
/// </summary>
public static class SharedAccessSignature
{
    /// <summary>The scheme word that starts a token and the HTTP <c>Authorization</c> header value.</summary>
    public const string Scheme = "SharedAccessSignature";

    /// <summary>The relay's default audience (<c>Relay:Audience</c>): the first part of the signed resource.</summary>
    public const string DefaultAudience = "edgenode-relay";

    /// <summary>The resource a device signs for the relay: <c>{audience}/devices/{deviceId}</c>.</summary>
    public static string DeviceResource(string audience, string deviceId)
    {
        ArgumentException.ThrowIfNullOrEmpty(audience);
        ArgumentException.ThrowIfNullOrEmpty(deviceId);
        return audience + "/devices/" + deviceId;
    }

    /// <summary>
    /// Makes a token: <c>SharedAccessSignature sr=..&amp;sig=..&amp;se=..[&amp;skn=..]</c>.
    /// </summary>
    /// <param name="resource">The resource (not yet URL-encoded).</param>
    /// <param name="key">The raw key bytes (the Base64-decoded device key).</param>
    /// <param name="expiry">Expiry, Unix seconds UTC.</param>
    /// <param name="keyName">Optional <c>skn</c> (the device id for the relay).</param>
    /// <exception cref="ArgumentException">The resource or key is empty.</exception>
    public static string Create(string resource, ReadOnlySpan<byte> key, long expiry, string? keyName = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(resource);
        if (key.IsEmpty)
        {
            throw new ArgumentException("The key must not be empty.", nameof(key));
        }

        var encodedResource = WebUtility.UrlEncode(resource);
        var sig = Sign(key, encodedResource, expiry);
        var token = string.Create(CultureInfo.InvariantCulture,
            $"{Scheme} sr={encodedResource}&sig={WebUtility.UrlEncode(sig)}&se={expiry}");
        return keyName is null ? token : token + "&skn=" + WebUtility.UrlEncode(keyName);
    }

    /// <summary>Base64(HMAC-SHA256(key, encodedResource + "\n" + expiry)).</summary>
    /// <param name="key">The raw key bytes.</param>
    /// <param name="encodedResource">The URL-encoded resource, exactly as it appears in <c>sr</c>.</param>
    /// <param name="expiry">Expiry, Unix seconds.</param>
    public static string Sign(ReadOnlySpan<byte> key, string encodedResource, long expiry)
    {
        ArgumentNullException.ThrowIfNull(encodedResource);
        var message = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{encodedResource}\n{expiry}"));
        return Convert.ToBase64String(HMACSHA256.HashData(key, message));
    }

    /// <summary>
    /// Parses a token or an <c>Authorization</c> header value. Fields may come in any order; <c>sr</c>,
    /// <c>sig</c> and <c>se</c> are required, each field at most once, <c>se</c> a non-negative integer.
    /// </summary>
    /// <returns>False (and null) for anything malformed.</returns>
    public static bool TryParse(string? value, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SasToken? token)
    {
        token = null;
        if (value is null || !value.StartsWith(Scheme + " ", StringComparison.Ordinal))
        {
            return false;
        }

        string? sr = null, sig = null, se = null, skn = null;
        foreach (var part in value.AsSpan(Scheme.Length + 1).Trim().ToString().Split('&'))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                return false;
            }

            var name = part[..eq];
            var field = part[(eq + 1)..];
            ref var slot = ref sr;
            switch (name)
            {
                case "sr": slot = ref sr; break;
                case "sig": slot = ref sig; break;
                case "se": slot = ref se; break;
                case "skn": slot = ref skn; break;
                default: continue; // unknown fields are ignored, as by IoT Hub
            }

            if (slot is not null)
            {
                return false;
            }

            slot = field;
        }

        if (string.IsNullOrEmpty(sr) || string.IsNullOrEmpty(sig) || se is null ||
            !long.TryParse(se, NumberStyles.None, CultureInfo.InvariantCulture, out var expiry))
        {
            return false;
        }

        token = new SasToken(sr, WebUtility.UrlDecode(sr), WebUtility.UrlDecode(sig), expiry,
            skn is null ? null : WebUtility.UrlDecode(skn));
        return true;
    }

    /// <summary>
    /// Checks a parsed token against a key, the expected resource and the current time. The signature is
    /// compared in constant time.
    /// </summary>
    /// <param name="token">The parsed token.</param>
    /// <param name="key">The raw key bytes of the device named by the token.</param>
    /// <param name="expectedResource">The resource the token must be for (compared ordinally, case-insensitive like host names).</param>
    /// <param name="now">The current time.</param>
    public static SasValidation Validate(SasToken token, ReadOnlySpan<byte> key, string expectedResource, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(token);
        ArgumentNullException.ThrowIfNull(expectedResource);
        Span<byte> given = stackalloc byte[32];
        var expected = Convert.FromBase64String(Sign(key, token.EncodedResource, token.Expiry));
        if (!Convert.TryFromBase64String(token.Signature, given, out var written) || written != 32 ||
            !CryptographicOperations.FixedTimeEquals(given, expected))
        {
            return SasValidation.BadSignature;
        }

        if (token.Expiry <= now.ToUnixTimeSeconds())
        {
            return SasValidation.Expired;
        }

        return string.Equals(token.Resource, expectedResource, StringComparison.OrdinalIgnoreCase)
            ? SasValidation.Valid
            : SasValidation.WrongResource;
    }
}
