using System.Collections.Frozen;
using EdgeNode.CloudRelay.Options;
using EdgeNode.Shared.Offload;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Auth;

/// <summary>The result of authenticating a request: the device id, or why it was refused (a metric label).</summary>
/// <param name="DeviceId">The authenticated device, or null.</param>
/// <param name="Failure">Null on success, else <c>missing</c>, <c>malformed</c>, <c>unknown_device</c>,
/// <c>bad_signature</c>, <c>expired</c> or <c>wrong_resource</c>.</param>
internal readonly record struct AuthResult(string? DeviceId, string? Failure);

/// <summary>
/// Device authentication by SAS token in the <c>Authorization</c> header (DESIGN.md §6, the IoT Hub token format
/// of notes/iothub.md): <c>SharedAccessSignature sr={UrlEncode(audience/devices/id)}&amp;sig=..&amp;se=..[&amp;skn=id]</c>.
/// The device is named by <c>skn</c>, else by the resource's <c>/devices/{id}</c> suffix; its configured key
/// must verify the signature, <c>se</c> must lie in the future, and the resource must be this relay's for
/// that device. Every failure is a 401 with a reason that is counted but never echoes the token.
/// </summary>
internal sealed class DeviceAuthenticator(IOptions<RelayOptions> options, TimeProvider time)
{
    private readonly FrozenDictionary<string, byte[]> _keys = options.Value.Devices
        .Where(d => d.Value.KeyBytes() is not null)
        .ToFrozenDictionary(d => d.Key, d => d.Value.KeyBytes()!, StringComparer.Ordinal);

    private readonly string _audience = options.Value.Audience;

    /// <summary>Number of configured devices.</summary>
    public int DeviceCount => _keys.Count;

    public AuthResult Authenticate(string? authorization)
    {
        if (string.IsNullOrEmpty(authorization))
        {
            return new AuthResult(null, "missing");
        }

        if (!SharedAccessSignature.TryParse(authorization, out var token))
        {
            return new AuthResult(null, "malformed");
        }

        var deviceId = token.KeyName ?? DeviceFromResource(token.Resource);
        if (deviceId is null || !_keys.TryGetValue(deviceId, out var key))
        {
            return new AuthResult(null, "unknown_device");
        }

        var expected = SharedAccessSignature.DeviceResource(_audience, deviceId);
        return SharedAccessSignature.Validate(token, key, expected, time.GetUtcNow()) switch
        {
            SasValidation.Valid => new AuthResult(deviceId, null),
            SasValidation.Expired => new AuthResult(null, "expired"),
            SasValidation.WrongResource => new AuthResult(null, "wrong_resource"),
            _ => new AuthResult(null, "bad_signature"),
        };
    }

    private static string? DeviceFromResource(string resource)
    {
        var at = resource.LastIndexOf("/devices/", StringComparison.OrdinalIgnoreCase);
        return at < 0 ? null : resource[(at + "/devices/".Length)..];
    }
}
