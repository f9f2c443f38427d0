using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeNode.TestSupport;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeNode.IngestBenchmark;

/// <summary>
/// End-to-end ingest benchmark (see README.md): the real daemon as a subprocess with <c>Execution:Paused=true</c>
/// behind a real Mosquitto, loaded by MQTT 5 publishers at QoS 1. Prints a Markdown table for docs/BENCHMARKS.md.
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        var jobs = IntArg(args, "--jobs", 20_000);
        var publishers = IntArg(args, "--publishers", 4);
        var window = IntArg(args, "--window", 256);
        var stateRoot = StringArg(args, "--state-root", Path.GetTempPath());
        var inv = CultureInfo.InvariantCulture;

        var model = Models.TinyInt8;
        var state = Path.Combine(stateRoot, "edgenode-ingest-bench-" + Guid.NewGuid().ToString("N")[..8]);
        var brokerPort = Ports.FreeLoopbackPort();
        var adminPort = Ports.FreeLoopbackPort();
        var confDir = Directory.CreateTempSubdirectory("edgenode-bench-mosquitto-").FullName;
        var conf = Path.Combine(confDir, "mosquitto.conf");
        // max_inflight_messages: QoS 1 messages Mosquitto sends a client before its PUBACKs (default 20) = the node's
        // largest possible group commit. max_queued_messages: the paused node's backlog must never be dropped.
        await File.WriteAllTextAsync(conf, $"listener {brokerPort} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000000\nmax_inflight_messages 1000\n");
        await using var broker = ProcessRunner.Start(Mosquitto.Binary, ["-c", conf]);
        await broker.WaitForLineAsync(l => l.Contains(" running", StringComparison.Ordinal), TimeSpan.FromSeconds(30));

        var dll = Path.Combine(AppContext.BaseDirectory, "edgenode.dll");
        var started = Stopwatch.StartNew();
        await using var node = ProcessRunner.Start("dotnet",
            [dll, "run", "--Node:Id=bench", "--Node:StateDirectory=" + state, "--Inference:ModelPath=" + model,
             "--Mqtt:Host=127.0.0.1", "--Mqtt:Port=" + brokerPort.ToString(inv), "--Admin:Url=http://127.0.0.1:" + adminPort.ToString(inv),
             "--Execution:Paused=true", "--Queue:MaxJobs=10000000", "--Queue:MaxBytes=4000000000", "--Logging:LogLevel:Default=Warning"],
            new Dictionary<string, string> { ["EDGENODE_CONFIG"] = "/nonexistent/edgenode.json", ["DOTNET_NOLOGO"] = "1" });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var readyz = new Uri($"http://127.0.0.1:{adminPort}/readyz");
        while (!await IsOkAsync(http, readyz))
        {
            if (started.Elapsed > TimeSpan.FromSeconds(60) || node.Exited.IsCompleted)
            {
                Console.Error.WriteLine("node did not become ready:\n" + string.Join('\n', node.Lines));
                return 1;
            }

            await Task.Delay(5);
        }

        var readyMs = started.Elapsed.TotalMilliseconds;
        await Task.Delay(TimeSpan.FromSeconds(3)); // let start-up garbage settle before reading the idle RSS
        var idleRssMb = RssMb(node.Id);

        var clients = new List<Publisher>();
        for (var p = 0; p < publishers; p++)
        {
            clients.Add(await Publisher.ConnectAsync(brokerPort, p));
        }

        var metricsUri = new Uri($"http://127.0.0.1:{adminPort}/metrics");
        await RunAsync(clients, "warm", Math.Min(2_000, jobs), window, http, metricsUri);
        var result = await RunAsync(clients, "run", jobs, window, http, metricsUri);
        var afterRssMb = RssMb(node.Id);

        var lat = result.Latencies.Order().ToArray();
        Console.WriteLine($"| state directory | {stateRoot} |");
        Console.WriteLine($"| jobs (after {Math.Min(2_000, jobs)} warm-up) | {jobs} from {publishers} publishers, window {window} each |");
        Console.WriteLine($"| committed (metrics) | {jobs / result.CommittedSeconds:F0} jobs/s |");
        Console.WriteLine($"| accepted events back at the publishers | {jobs / result.AcceptedSeconds:F0} jobs/s |");
        Console.WriteLine($"| accept latency p50 / p99 / max (publish -> accepted event) | {Pct(lat, 0.50):F1} / {Pct(lat, 0.99):F1} / {lat[^1]:F1} ms |");
        Console.WriteLine($"| start to ready (/readyz 200) | {readyMs:F0} ms |");
        Console.WriteLine($"| RSS idle / after ingest | {idleRssMb:F0} / {afterRssMb:F0} MB |");

        foreach (var c in clients)
        {
            await c.DisposeAsync();
        }

        node.Signal(15);
        await node.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Directory.Delete(state, recursive: true);
        Directory.Delete(confDir, recursive: true);
        return 0;
    }

    private sealed record RunResult(double CommittedSeconds, double AcceptedSeconds, List<double> Latencies);

    private static async Task<RunResult> RunAsync(List<Publisher> clients, string tag, int jobs, int window, HttpClient http, Uri metrics)
    {
        var before = await AcceptedTotalAsync(http, metrics);
        var clock = Stopwatch.StartNew();
        var perClient = jobs / clients.Count;
        var sends = clients.Select((c, i) => c.SendAsync(tag, perClient + (i < jobs % clients.Count ? 1 : 0), window, clock)).ToList();
        double committed = 0;
        while (committed == 0)
        {
            if (await AcceptedTotalAsync(http, metrics) - before >= jobs)
            {
                committed = clock.Elapsed.TotalSeconds;
            }
            else
            {
                await Task.Delay(5);
            }
        }

        await Task.WhenAll(sends);
        var accepted = clock.Elapsed.TotalSeconds;
        return new RunResult(committed, accepted, clients.SelectMany(c => c.Latencies).ToList());
    }

    private static async Task<double> AcceptedTotalAsync(HttpClient http, Uri metrics)
    {
        var text = await http.GetStringAsync(metrics);
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("edgenode_jobs_accepted_total ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture);
    }

    private static async Task<bool> IsOkAsync(HttpClient http, Uri uri)
    {
        try
        {
            using var response = await http.GetAsync(uri);
            return response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            return false;
        }
        catch (TaskCanceledException)
        {
            return false;
        }
    }

    private static double RssMb(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    private static double Pct(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];

    private static int IntArg(string[] args, string name, int fallback) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;

    private static string StringArg(string[] args, string name, string fallback) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;

    /// <summary>One MQTT 5 device: publishes jobs at QoS 1 with a Response Topic and waits for each accepted event.</summary>
    private sealed class Publisher : IAsyncDisposable
    {
        private readonly IMqttClient _client;
        private readonly string _replyTopic;
        private readonly ConcurrentDictionary<string, long> _sentAt = new(StringComparer.Ordinal);
        private SemaphoreSlim _window = new(1);
        private Stopwatch _clock = Stopwatch.StartNew();
        private TaskCompletionSource _done = new();
        private int _remaining;

        private Publisher(IMqttClient client, string replyTopic)
        {
            _client = client;
            _replyTopic = replyTopic;
            _client.ApplicationMessageReceivedAsync += e =>
            {
                var id = Encoding.UTF8.GetString(e.ApplicationMessage.CorrelationData);
                using var doc = JsonDocument.Parse(e.ApplicationMessage.Payload.ToArray());
                if (doc.RootElement.GetProperty("type").GetString() == "accepted" && _sentAt.TryRemove(id, out var sent))
                {
                    Latencies.Add((_clock.Elapsed.Ticks - sent) / (double)TimeSpan.TicksPerMillisecond);
                    _window.Release();
                    if (Interlocked.Decrement(ref _remaining) == 0)
                    {
                        _done.TrySetResult();
                    }
                }

                return Task.CompletedTask;
            };
        }

        public ConcurrentBag<double> Latencies { get; private set; } = [];

        public static async Task<Publisher> ConnectAsync(int port, int index)
        {
            var client = new MqttClientFactory().CreateMqttClient();
            var replyTopic = $"bench/{index}/replies";
            await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port)
                .WithClientId("bench-publisher-" + index.ToString(CultureInfo.InvariantCulture)).WithCleanStart(true).Build());
            await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(f => f.WithTopic(replyTopic).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)).Build());
            return new Publisher(client, replyTopic);
        }

        public async Task SendAsync(string tag, int count, int window, Stopwatch clock)
        {
            _clock = clock;
            _window = new SemaphoreSlim(window);
            _done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Latencies = [];
            _remaining = count;
            var prefix = $"{tag}-{_replyTopic.Split('/')[1]}-";
            for (var i = 0; i < count; i++)
            {
                await _window.WaitAsync();
                var id = prefix + i.ToString(CultureInfo.InvariantCulture);
                var payload = $$"""{"id":"{{id}}","prompt":"Sensor {{i}} reads 42.5 degrees and","max_new_tokens":16}""";
                _sentAt[id] = _clock.Elapsed.Ticks;
                _ = _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("edgenode/jobs").WithPayload(payload)
                    .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                    .WithResponseTopic(_replyTopic).WithCorrelationData(Encoding.UTF8.GetBytes(id)).Build());
            }

            await _done.Task.WaitAsync(TimeSpan.FromMinutes(5));
        }

        public async ValueTask DisposeAsync()
        {
            await _client.DisconnectAsync();
            _client.Dispose();
        }
    }
}
