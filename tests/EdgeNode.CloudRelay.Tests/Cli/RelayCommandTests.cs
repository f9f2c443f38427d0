using EdgeNode.CloudRelay.Hosting;
using EdgeNode.Shared.Offload;
using EdgeNode.TestSupport;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Tests.Cli;

/// <summary>The <c>edgenode-relay</c> binary's helper commands and configuration validation.</summary>
[Collection(RelayCollection.Name)]
public sealed class RelayCommandTests
{
    private static string DllPath => Path.Combine(AppContext.BaseDirectory, "edgenode-relay.dll");

    [Fact]
    public async Task Token_DeviceAndKey_PrintsATokenTheRelayAccepts()
    {
        var key = Convert.ToBase64String(RelayHost.DeviceKey);
        await using var process = ProcessRunner.Start("dotnet", [DllPath, "token", "--device", RelayHost.Device, "--key", key, "--expiry", "4102444800"]);

        var line = await process.WaitForLineAsync(l => l.StartsWith("SharedAccessSignature ", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        Assert.Equal(0, await process.Exited.WaitAsync(TimeSpan.FromSeconds(60)));

        Assert.True(SharedAccessSignature.TryParse(line, out var token));
        Assert.Equal(4102444800, token.Expiry);
        Assert.Equal(RelayHost.Device, token.KeyName);
        Assert.Equal(SasValidation.Valid, SharedAccessSignature.Validate(token, RelayHost.DeviceKey, "edgenode-relay/devices/gw-1", DateTimeOffset.UtcNow));
    }

    [Theory]
    [InlineData("--Relay:Devices:gw-x:Key=not-base64!", "Relay:Devices:gw-x:Key")]
    [InlineData("--Relay:Url=bad", "Relay:Url: 'bad'")] // newcomer check: these three exited 1 with a stack trace
    [InlineData("--Relay:Url=http://127.0.0.1:99999", "Relay:Url: 'http://127.0.0.1:99999'")]
    [InlineData("--Relay:Embedded:ModelPath=/nonexistent/model.onnx", "Relay:Embedded:ModelPath names a file that does not exist: '/nonexistent/model.onnx'")]
    public async Task Run_BadConfiguration_ExitsTwoNamingTheKey(string arg, string expected)
    {
        string[] args = arg.StartsWith("--Relay:Url=", StringComparison.Ordinal) ? [DllPath, arg] : [DllPath, "--Relay:Url=http://127.0.0.1:0", arg];
        await using var process = ProcessRunner.Start("dotnet", args);

        Assert.Equal(2, await process.Exited.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains(process.Lines, l => l.StartsWith("edgenode-relay: invalid configuration", StringComparison.Ordinal) && l.Contains(expected, StringComparison.Ordinal));
        Assert.DoesNotContain(process.Lines, l => l.Contains("   at ", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("http://127.0.0.1:0")]
    [InlineData("http://*:9700;https://+:9701")]
    [InlineData("http://[::1]:9700")]
    public void Check_KestrelListenUrls_Accepted(string url) =>
        Assert.Empty(new EdgeNode.CloudRelay.Options.RelayOptions { Url = url }.Check());

    [Fact]
    public async Task Start_UpstreamWithoutUrl_FailsValidationNamingTheKey()
    {
        var app = RelayApp.Build([], new Dictionary<string, string?>
        {
            ["Relay:Url"] = "http://127.0.0.1:0",
            ["Relay:Backend"] = "Upstream",
        });
        await using (app)
        {
            var error = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
            Assert.Contains("Relay:Upstream:Url", error.Message, StringComparison.Ordinal);
        }
    }
}
