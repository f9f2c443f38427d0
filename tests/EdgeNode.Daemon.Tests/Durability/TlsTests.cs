using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// Issue 4 acceptance line 4: the broker link over TLS to Mosquitto with a test CA and a password file, both made in
/// the test. A wrong password is a clear error, retried with backoff while the process stays up.
/// </summary>
[Collection("Daemon")]
public sealed class TlsTests
{
    private static readonly TimeSpan Timeout = NodeProcess.Timeout;

    [Fact]
    public async Task TlsWithCaFileAndPassword_NodeConnectsAndRunsAJob()
    {
        using var pki = new TestPki();
        await using var broker = await Mosquitto.StartAsync(pki.MosquittoListenerConfig());
        using var state = new TempDirectory();
        await using var node = new NodeProcess(state.Path, broker.Port, "tls1",
            "--Mqtt:UseTls=true", "--Mqtt:CaFile=" + pki.CaFile, "--Mqtt:Username=node", "--Mqtt:Password=" + TestPki.NodePassword);
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "tls1", pki.ConfigureDevice);

        await device.PublishJobAsync("tls-1", """{"id":"tls-1","prompt":"Over TLS","max_new_tokens":4}""");
        await device.WaitForFinalsAsync(["tls-1"], Timeout);
        Assert.Contains("\"status\":\"SUCCEEDED\"", device.FinalText("tls-1"), StringComparison.Ordinal);
        Assert.Contains(broker.Process.Lines, l => l.Contains("New client connected", StringComparison.Ordinal) && l.Contains("as edgenode-tls1", StringComparison.Ordinal) && l.Contains("u'node'", StringComparison.Ordinal));
    }

    [Fact]
    public async Task WrongPassword_ClearErrorAndBackoff_ProcessStaysUp_RecoversWhenTheBrokerAcceptsIt()
    {
        using var pki = new TestPki();
        await using var broker = await Mosquitto.StartAsync(pki.MosquittoListenerConfig());
        using var state = new TempDirectory();
        await using var node = new NodeProcess(state.Path, broker.Port, "tls2",
            "--Mqtt:UseTls=true", "--Mqtt:CaFile=" + pki.CaFile, "--Mqtt:Username=node", "--Mqtt:Password=not-the-password");
        var run = node.Start();

        // Five refused attempts, each logged with the reason.
        await run.WaitForLineAsync(_ => CountRefusals(run) >= 5, Timeout);

        var refusals = run.Lines.Where(IsRefusal).ToList();
        Assert.All(refusals, l => Assert.True(l.Contains("NotAuthorized", StringComparison.Ordinal) || l.Contains("BadUserNameOrPassword", StringComparison.Ordinal), l));
        Assert.Contains(run.Lines, l => l.Contains("fail: ", StringComparison.Ordinal) && l.Contains("refused the credentials of user 'node'", StringComparison.Ordinal)
            && l.Contains("Mqtt:Password", StringComparison.Ordinal));
        Assert.DoesNotContain(run.Lines, l => l.Contains("not-the-password", StringComparison.Ordinal));
        Assert.False(run.Exited.IsCompleted, "a refused password must not stop the node");

        // Backoff: the gaps between attempts grow (exponential with jitter: compare the sum of the last two with the first two).
        var times = refusals.Take(5).Select(l => TimeSpan.ParseExact(l[..12], @"hh\:mm\:ss\.fff", CultureInfo.InvariantCulture)).ToList();
        var gaps = times.Zip(times.Skip(1), (a, b) => b - a).ToList();
        Assert.True(gaps[2] + gaps[3] > gaps[0] + gaps[1], "gaps between attempts must grow: " + string.Join(", ", gaps.Select(g => g.TotalMilliseconds)));

        // The operator fixes the broker's password file; Mosquitto reloads it on SIGHUP and the node gets in by itself.
        pki.WritePasswordFile("not-the-password");
        broker.Process.Signal(1);
        await run.WaitForLineAsync(l => l.Contains("Subscribed to edgenode/nodes/tls2/jobs", StringComparison.Ordinal), Timeout);
    }

    private static bool IsRefusal(string line) => line.Contains("Cannot connect to MQTT broker", StringComparison.Ordinal);

    private static int CountRefusals(ProcessRunner run) => run.Lines.Count(IsRefusal);

    /// <summary>A test CA, a server certificate for 127.0.0.1 signed by it, and a Mosquitto password file, as files.</summary>
    private sealed class TestPki : IDisposable
    {
        public const string NodePassword = "node-secret";
        private readonly TempDirectory _dir = new();

        public TestPki()
        {
            using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var caRequest = new CertificateRequest("CN=EdgeNode Test CA", caKey, HashAlgorithmName.SHA256);
            caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            var now = DateTimeOffset.UtcNow;
            using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));

            using var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var serverRequest = new CertificateRequest("CN=127.0.0.1", serverKey, HashAlgorithmName.SHA256);
            var san = new SubjectAlternativeNameBuilder();
            san.AddIpAddress(IPAddress.Loopback);
            san.AddDnsName("localhost");
            serverRequest.CertificateExtensions.Add(san.Build());
            serverRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
            serverRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
            using var server = serverRequest.Create(ca, now.AddMinutes(-5), now.AddDays(1), RandomNumberGenerator.GetBytes(8));

            CaFile = _dir.Combine("ca.pem");
            File.WriteAllText(CaFile, ca.ExportCertificatePem());
            File.WriteAllText(_dir.Combine("server.pem"), server.ExportCertificatePem());
            File.WriteAllText(_dir.Combine("server.key"), serverKey.ExportPkcs8PrivateKeyPem());
            WritePasswordFile(NodePassword);
        }

        public string CaFile { get; }

        /// <summary>Options for the last listener of the Mosquitto test config (TLS, passwords, no anonymous clients).</summary>
        public string MosquittoListenerConfig() =>
            $"cafile {CaFile}\ncertfile {_dir.Combine("server.pem")}\nkeyfile {_dir.Combine("server.key")}\npassword_file {_dir.Combine("passwd")}\nallow_anonymous false\n";

        /// <summary>Writes the broker's password file with <c>mosquitto_passwd -b</c>: users <c>node</c> (the given password) and <c>device</c>.</summary>
        public void WritePasswordFile(string nodePassword)
        {
            var file = _dir.Combine("passwd");
            File.Delete(file);
            File.WriteAllText(file, "");
            foreach (var (user, password) in new[] { ("node", nodePassword), ("device", "device-secret") })
            {
                using var p = System.Diagnostics.Process.Start("mosquitto_passwd", ["-b", file, user, password]);
                p.WaitForExit();
                Assert.Equal(0, p.ExitCode);
            }
        }

        public void ConfigureDevice(MQTTnet.MqttClientOptionsBuilder builder)
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(CaFile);
            builder.WithCredentials("device", "device-secret")
                .WithTlsOptions(o => o.UseTls().WithTargetHost("127.0.0.1").WithTrustChain(roots));
        }

        public void Dispose() => _dir.Dispose();
    }
}
