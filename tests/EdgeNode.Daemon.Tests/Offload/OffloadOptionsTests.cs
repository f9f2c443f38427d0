using EdgeNode.Daemon.Options;

namespace EdgeNode.Daemon.Tests.Offload;

public sealed class OffloadOptionsTests
{
    private static readonly string Key = Convert.ToBase64String(new byte[32]);

    [Fact]
    public void IsEnabled_NoRelayUrl_IsFalseAndValid()
    {
        var options = new OffloadOptions();

        Assert.False(options.IsEnabled);
        Assert.Null(options.Validate());
    }

    [Fact]
    public void IsEnabled_RelayUrlSet_IsTrueUnlessDisabled()
    {
        Assert.True(new OffloadOptions { RelayUrl = "http://127.0.0.1:9700", DeviceKey = Key }.IsEnabled);
        Assert.False(new OffloadOptions { RelayUrl = "http://127.0.0.1:9700", DeviceKey = Key, Enabled = false }.IsEnabled);
    }

    [Theory]
    [InlineData("not a url", "RelayUrl")]
    [InlineData("ftp://relay", "RelayUrl")]
    public void Validate_BadRelayUrl_NamesTheKey(string url, string expected)
    {
        var error = new OffloadOptions { RelayUrl = url, DeviceKey = Key, Enabled = true }.Validate();

        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("***not base64***")]
    public void Validate_BadDeviceKey_NamesTheKeyWithoutEchoingIt(string? key)
    {
        var error = new OffloadOptions { RelayUrl = "http://127.0.0.1:9700", DeviceKey = key }.Validate();

        Assert.NotNull(error);
        Assert.Contains("DeviceKey", error, StringComparison.Ordinal);
        Assert.DoesNotContain("***", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_ExitAboveEnter_IsRefused()
    {
        var error = new OffloadOptions { RhoThreshold = 0.8, RhoExitThreshold = 0.9 }.Validate();

        Assert.Contains("RhoExitThreshold", error, StringComparison.Ordinal);
    }
}
