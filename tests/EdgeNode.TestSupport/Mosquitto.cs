using System.Globalization;

namespace EdgeNode.TestSupport;

/// <summary>
/// A real Mosquitto broker on a loopback port with a config written for the test (notes/mqttnet.md:
/// <c>listener PORT 127.0.0.1</c>, <c>allow_anonymous true</c>). Needs Debian's <c>mosquitto</c> package
/// (<c>.ci/run</c> installs it). Started with <c>-v</c>, so its log shows CONNECT/PUBLISH/PUBACK lines.
/// </summary>
public sealed class Mosquitto : IAsyncDisposable
{
    public const string Binary = "/usr/sbin/mosquitto";

    private readonly string _directory;

    private Mosquitto(ProcessRunner process, int port, string directory)
    {
        Process = process;
        Port = port;
        _directory = directory;
    }

    public int Port { get; }

    public ProcessRunner Process { get; }

    /// <summary>Starts Mosquitto and waits until it listens.</summary>
    /// <exception cref="InvalidOperationException">When mosquitto is not installed (install: <c>apt-get install -y mosquitto mosquitto-clients</c>).</exception>
    public static async Task<Mosquitto> StartAsync(string extraConfig = "", int? port = null)
    {
        if (!File.Exists(Binary))
        {
            throw new InvalidOperationException("Mosquitto is required for this test: apt-get install -y mosquitto mosquitto-clients");
        }

        var p = port ?? Ports.FreeLoopbackPort();
        var dir = Directory.CreateTempSubdirectory("edgenode-mosquitto-").FullName;
        var conf = Path.Combine(dir, "mosquitto.conf");
        await File.WriteAllTextAsync(conf, string.Create(CultureInfo.InvariantCulture,
            $"listener {p} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n{extraConfig}\n"));
        var process = ProcessRunner.Start(Binary, ["-c", conf, "-v"]);
        var broker = new Mosquitto(process, p, dir);
        await process.WaitForLineAsync(l => l.Contains(" running", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        return broker;
    }

    public async ValueTask DisposeAsync()
    {
        await Process.DisposeAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>The real Mosquitto command-line clients (Debian's <c>mosquitto-clients</c>).</summary>
public static class MosquittoClients
{
    /// <summary>
    /// Starts <c>mosquitto_sub</c> with <c>-d</c> (so the SUBACK is printed) under <c>stdbuf -oL</c>: without
    /// a terminal its stdout is block-buffered and lines would only appear at exit.
    /// </summary>
    public static async Task<ProcessRunner> SubscribeAsync(int port, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var sub = ProcessRunner.Start("stdbuf", ["-oL", "-eL", "mosquitto_sub", "-h", "127.0.0.1", "-p", port.ToString(CultureInfo.InvariantCulture), "-d", .. arguments]);
        await sub.WaitForLineAsync(l => l.Contains("SUBACK", StringComparison.Ordinal), timeout);
        return sub;
    }

    /// <summary>Runs <c>mosquitto_pub</c> to completion; returns its exit code.</summary>
    public static async Task<int> PublishAsync(int port, IEnumerable<string> arguments, TimeSpan timeout)
    {
        await using var pub = ProcessRunner.Start("mosquitto_pub", ["-h", "127.0.0.1", "-p", port.ToString(CultureInfo.InvariantCulture), .. arguments]);
        return await pub.WaitForExitAsync(timeout);
    }
}
