using EdgeNode.Daemon.IoTHub;
using EdgeNode.Daemon.Tests.Cli;
using EdgeNode.Shared.Offload;

namespace EdgeNode.Daemon.Tests.IoTHub;

public sealed class SasTokenTests
{
    // Key = Base64 of the bytes 0..31; resource and expiry fixed.
    private const string Key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    private const string Resource = "myhub.azure-devices.net/devices/edge-01";
    private const long Expiry = 1767225600;

    // Computed independently with Debian's /usr/bin/python3 (3.x, standard library only):
    //   import hmac, hashlib, base64, urllib.parse
    //   key = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='
    //   sr = urllib.parse.quote('myhub.azure-devices.net/devices/edge-01', safe='')
    //   se = '1767225600'
    //   sig = base64.b64encode(hmac.new(base64.b64decode(key), (sr + '\n' + se).encode(), hashlib.sha256).digest()).decode()
    //   print('SharedAccessSignature sr=' + sr + '&sig=' + urllib.parse.quote(sig, safe='') + '&se=' + se)
    private const string Expected =
        "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fedge-01&sig=SEAuQFpXFYSoYeo7bFCA7gW7Dy6BD%2FsDO9G%2BU3yM%2BwY%3D&se=1767225600";

    /// <summary>The device token comes from the one SAS implementation (EdgeNode.Shared's SharedAccessSignature).</summary>
    [Fact]
    public void CreateToken_KnownKeyResourceAndExpiry_MatchesPythonHmac()
    {
        var cs = IoTHubConnectionString.TryParse("HostName=myhub.azure-devices.net;DeviceId=edge-01;SharedAccessKey=" + Key, out _)!;
        Assert.Equal(Expected, cs.CreateToken(Expiry));
        Assert.Equal(Expected, SharedAccessSignature.Create(Resource, Convert.FromBase64String(Key), Expiry));
    }

    [Fact]
    public void CreateToken_NoKey_ThrowsInvalidOperation()
    {
        var cs = IoTHubConnectionString.TryParse("HostName=myhub.azure-devices.net;DeviceId=edge-01", out _)!;
        Assert.Throws<InvalidOperationException>(() => cs.CreateToken(Expiry));
    }

    [Fact]
    public void TryParse_DeviceConnectionString_GivesUserNameAndResource_AndToStringHidesKey()
    {
        var cs = IoTHubConnectionString.TryParse("HostName=myhub.azure-devices.net;DeviceId=edge-01;SharedAccessKey=" + Key, out var error);
        Assert.Null(error);
        Assert.NotNull(cs);
        Assert.Equal(Resource, cs.Resource);
        Assert.Equal("myhub.azure-devices.net/edge-01/?api-version=2021-04-12", cs.UserName);
        Assert.Equal(Key, cs.SharedAccessKey);
        Assert.DoesNotContain(Key, cs.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("DeviceId=d;SharedAccessKey=AAAA", "HostName is missing")]
    [InlineData("HostName=h;SharedAccessKey=AAAA", "DeviceId is missing")]
    [InlineData("HostName=h;DeviceId=d;SharedAccessKey=%%%", "SharedAccessKey is not valid Base64")]
    [InlineData("HostName=h;DeviceId=a/b;SharedAccessKey=AAAA", "DeviceId must not contain '/', '+' or '#'")]
    [InlineData("", "the connection string is empty")]
    public void TryParse_Invalid_NamesTheProblem(string text, string expected)
    {
        Assert.Null(IoTHubConnectionString.TryParse(text, out var error));
        Assert.Equal(expected, error);
    }

    [Fact]
    [Trait("Category", "Process")]
    public async Task IoTHubTokenCommand_KnownAnswer_PrintsTheToken()
    {
        await using var p = EdgeNodeProcess.Start("iothub", "token",
            "--connection-string", "HostName=myhub.azure-devices.net;DeviceId=edge-01;SharedAccessKey=" + Key, "--expiry", "1767225600");
        Assert.Equal(0, await p.WaitForExitAsync(TimeSpan.FromSeconds(120)));
        Assert.Contains(Expected, p.Lines);
    }
}
