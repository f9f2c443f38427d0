using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.IoTHub;
using EdgeNode.TestSupport;
using EdgeNode.TestSupport.IoTHub;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeNode.Daemon.Tests.IoTHub;

/// <summary>
/// The connection options of issue 6 against the emulator: X.509 client-certificate authentication (no SharedAccessKey,
/// same user name, TLS client certificate) and MQTT over WebSockets (<c>wss://{host}:{port}/$iothub/websocket</c>).
/// </summary>
[Collection("Daemon")]
public sealed class IoTHubTransportTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task X509_ClientCertificateWithoutKey_ConnectsWithDocumentedUserName_AndServesAC2dJob()
    {
        await using var node = await IoTHubNode.StartAsync(emulator: new IoTHubEmulatorOptions(X509: true), configure: hub => new Dictionary<string, string?>
        {
            ["IoTHub:ConnectionString"] = hub.X509ConnectionString,
            ["IoTHub:ClientCertificateFile"] = hub.DeviceCertificateFile,
            ["IoTHub:ClientKeyFile"] = hub.DeviceKeyFile,
        });
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the reported properties over the X.509 link");

        var connection = Assert.Single(hub.Connections);
        Assert.Equal("", connection.Password);
        Assert.Equal(hub.DeviceThumbprint, connection.CertificateThumbprint);
        Assert.Equal(IoTHubEmulator.HostName + "/" + hub.DeviceId + "/?api-version=2021-04-12", connection.UserName);
        Assert.Equal(hub.DeviceId, connection.ClientId);

        await hub.SendC2dAsync("{\"id\":\"x509-1\",\"prompt\":\"Hello\",\"max_new_tokens\":3}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => m.Properties.GetValueOrDefault("jobId") == "x509-1" && m.Properties.GetValueOrDefault("type") == "result"), Timeout, "the D2C result");
        Assert.DoesNotContain(node.Logs.Lines, l => l.Contains("BEGIN", StringComparison.Ordinal) || l.Contains("PRIVATE KEY", StringComparison.Ordinal));
    }

    [Fact]
    public async Task X509_UnregisteredCertificate_IsRefused_AndRetriedWithBackoff()
    {
        using var dir = new TempDirectory();
        await using var hub = await IoTHubEmulator.StartAsync(dir.Path, new IoTHubEmulatorOptions(X509: true));

        // Another self-signed certificate for the same device id: not the registered thumbprint.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + hub.DeviceId, key, HashAlgorithmName.SHA256);
        using var other = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var certFile = Path.Combine(dir.Path, "other-cert.pem");
        var keyFile = Path.Combine(dir.Path, "other-key.pem");
        await File.WriteAllTextAsync(certFile, other.ExportCertificatePem());
        await File.WriteAllTextAsync(keyFile, key.ExportPkcs8PrivateKeyPem());

        using var link = new IoTHubLink(Microsoft.Extensions.Options.Options.Create(new IoTHubOptions
        {
            ConnectionString = hub.X509ConnectionString,
            ClientCertificateFile = certFile,
            ClientKeyFile = keyFile,
            Port = hub.Port,
            CaFile = hub.CaFile,
            InitialBackoffMilliseconds = 100,
            MaxBackoffSeconds = 1,
        }), new NodeSignals(), TimeProvider.System, NullLogger<IoTHubLink>.Instance);
        await link.StartAsync(CancellationToken.None);
        try
        {
            await hub.WaitUntilAsync(h => h.Log.Count(l => l.StartsWith("TLS: refused", StringComparison.Ordinal)) >= 2, Timeout, "two refused attempts");
            Assert.Empty(hub.Connections);
            Assert.False(link.IsConnected);
        }
        finally
        {
            await link.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task WebSockets_SasOverWss_ConnectsOnIoTHubPath_AndServesTwinMethodsAndC2d()
    {
        await using var node = await IoTHubNode.StartAsync(emulator: new IoTHubEmulatorOptions(WebSockets: true), configure: hub => new Dictionary<string, string?>
        {
            ["IoTHub:UseWebSockets"] = "true",
            ["IoTHub:Port"] = hub.Port.ToString(CultureInfo.InvariantCulture),
        });
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the reported properties over WebSockets");
        var connection = Assert.Single(hub.Connections);
        Assert.Equal("websocket", connection.Transport);
        Assert.StartsWith("SharedAccessSignature ", connection.Password, StringComparison.Ordinal);

        Assert.Equal(200, (await hub.InvokeMethodAsync("getStatus", null, Timeout)).Status);
        await hub.SendC2dAsync("{\"id\":\"ws-1\",\"prompt\":\"Hello\",\"max_new_tokens\":3}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => m.Properties.GetValueOrDefault("jobId") == "ws-1" && m.Properties.GetValueOrDefault("type") == "result"), Timeout, "the D2C result");
        Assert.Single(hub.C2dCompleted);
        Assert.Contains(node.Logs.Lines, l => l.Contains("over WebSockets", StringComparison.Ordinal));
    }
}
