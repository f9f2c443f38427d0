using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeNode.TestSupport;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeNode.Benchmarks;

/// <summary>
/// <c>ingest</c>: end-to-end ingest benchmark (docs/BENCHMARKS.md "Ingest", issue 4). The real <c>edgenode run</c> as a
/// subprocess with <c>Execution:Paused=true</c> (jobs are committed and acknowledged, none runs) behind a real Mosquitto
/// (no <c>-v</c>, <c>max_inflight_messages 1000</c> = the largest possible group commit, <c>max_queued_messages</c>
/// unbounded in practice), loaded at QoS 1. Mosquitto PUBACKs a publisher on receipt, not after the node's commit, so
/// that PUBACK says nothing about the node: the measure is the node's own <c>edgenode_ingest_accept_seconds</c>
/// histogram (arrival of the job message -> commit + fsync -> PUBACK), read before and after each run.
/// </summary>
/// <remarks>
/// Runs, in this order, after a warm-up of 2,000 jobs:
/// <list type="bullet">
/// <item><b>open loop</b> (<c>--rate R --seconds S</c>, after <c>--warmup-seconds</c> at the same rate, uncounted): R
/// jobs/s, evenly spaced, whatever the node does. By default the load is <c>--feeders</c> <c>mosquitto_pub -l</c>
/// processes fed their lines on time (see <see cref="LineFeeder"/>: the cheapest load on a machine the node shares);
/// with <c>--device-latency true</c> it is the MQTTnet devices below, which also time each job to its <c>accepted</c>
/// event (p50 / p99 / p99.9 / max, from the scheduled send time: no coordinated omission).</item>
/// <item><b>saturation</b> (<c>--jobs N</c>): the most jobs/s the node commits (from <c>edgenode_jobs_accepted_total</c>
/// on <c>/metrics</c>): all N jobs written to the feeders at once (Mosquitto holds what the node has not taken); with
/// <c>--device-latency true</c>, MQTTnet devices each keeping <c>--window</c> W jobs in flight (released by the
/// accepted event).</item>
/// </list>
/// Also: CPU time of the daemon, Mosquitto and the publishers per 1,000 jobs (from /proc, so it holds on a shared
/// machine where the wall-clock rates do not), start to ready (process start to <c>/readyz</c> 200), RSS
/// (<c>VmRSS</c>) idle 3 s after ready and after the runs, and how many accepted events arrived out of publish order
/// per device (must be 0).
/// The node runs with the environment packaging/systemd/edgenode.service gives it (<c>DOTNET_GCgen0size</c>;
/// <c>--gen0-size ""</c> for the runtime's default).
/// Usage: <c>ingest [--rate 5000] [--seconds 10] [--warmup-seconds 5] [--feeders 1] [--device-latency false] [--gen0-size 0x600000]
/// [--jobs 20000] [--publishers 4] [--window 256] [--state-root /tmp] [--only open|saturation|idle]
/// [--broker-nodelay true|false]</c> (idle: start to ready and idle RSS only; Mosquitto runs with its default, Nagle
/// on; <c>--broker-nodelay true</c> sets <c>set_tcp_nodelay true</c>).
/// </remarks>
internal static class IngestBenchmark
{
    private const int WarmUpJobs = 2_000;

    public static async Task<int> RunAsync(string[] args)
    {
        var rate = Program.Option(args, "--rate", 5_000);
        var seconds = Program.Option(args, "--seconds", 10);
        var warmUpSeconds = Program.Option(args, "--warmup-seconds", 5);
        var jobs = Program.Option(args, "--jobs", 20_000);
        var publishers = Program.Option(args, "--publishers", 4);
        var window = Program.Option(args, "--window", 256);
        var stateRoot = Program.OptionText(args, "--state-root", Path.GetTempPath());
        var only = Program.OptionText(args, "--only", string.Empty);
        var nodelay = Program.OptionText(args, "--broker-nodelay", "false") == "true";
        var deviceLatency = Program.OptionText(args, "--device-latency", "false") == "true";
        var feederCount = Program.Option(args, "--feeders", 1);
        // As packaging/systemd/edgenode.service runs the node: the unit's DOTNET_GCgen0size (--gen0-size "" = the runtime's default).
        var gen0Size = Program.OptionText(args, "--gen0-size", UnitEnvironment("DOTNET_GCgen0size") ?? string.Empty);
        var inv = CultureInfo.InvariantCulture;

        var model = Models.Demonstration; // what `edgenode run` loads when no model is configured
        var state = Path.Combine(stateRoot, "edgenode-ingest-bench-" + Guid.NewGuid().ToString("N")[..8]);
        var brokerPort = Ports.FreeLoopbackPort();
        var adminPort = Ports.FreeLoopbackPort();
        var confDir = Directory.CreateTempSubdirectory("edgenode-bench-mosquitto-").FullName;
        var conf = Path.Combine(confDir, "mosquitto.conf");
        // max_inflight_messages: QoS 1 messages Mosquitto sends a client before its PUBACKs (default 20) = the node's
        // largest possible group commit. max_queued_messages: the paused node's backlog must never be dropped.
        // set_tcp_nodelay: Mosquitto leaves Nagle's algorithm on by default (mosquitto.conf(5)), which holds its small
        // PUBLISH and PUBACK packets back behind unacknowledged data: turning it off halved the median accept latency at
        // 1,000 jobs/s but not the tail on the shared machine (docs/BENCHMARKS.md "Ingest"), so the default stays Mosquitto's.
        await File.WriteAllTextAsync(conf, $"listener {brokerPort} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000000\nmax_inflight_messages 1000\nset_tcp_nodelay {(nodelay ? "true" : "false")}\n");
        await using var broker = ProcessRunner.Start(Mosquitto.Binary, ["-c", conf]);
        await broker.WaitForLineAsync(l => l.Contains(" running", StringComparison.Ordinal), TimeSpan.FromSeconds(30));

        var dll = Path.Combine(AppContext.BaseDirectory, "edgenode.dll");
        var started = Stopwatch.StartNew();
        await using var node = ProcessRunner.Start("dotnet",
            [dll, "run", "--Node:Id=bench", "--Node:StateDirectory=" + state, "--Inference:ModelPath=" + model,
             "--Mqtt:Host=127.0.0.1", "--Mqtt:Port=" + brokerPort.ToString(inv), "--Admin:Url=http://127.0.0.1:" + adminPort.ToString(inv),
             "--Execution:Paused=true", "--Queue:MaxJobs=10000000", "--Queue:MaxBytes=4000000000", "--Logging:LogLevel:Default=Warning"],
            new Dictionary<string, string> { ["EDGENODE_CONFIG"] = "", ["DOTNET_NOLOGO"] = "1", ["DOTNET_GCgen0size"] = gen0Size.Length == 0 ? "0" : gen0Size }); // 0: the runtime's default
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

        if (only == "idle")
        {
            Console.WriteLine($"| start to ready (/readyz 200) | {readyMs:F0} ms |");
            Console.WriteLine($"| RSS idle | {idleRssMb:F0} MB |");
            node.Signal(15);
            await node.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Directory.Delete(state, recursive: true);
            Directory.Delete(confDir, recursive: true);
            return 0;
        }

        var clients = new List<Publisher>();
        for (var p = 0; p < publishers; p++)
        {
            clients.Add(await Publisher.ConnectAsync(brokerPort, p));
        }

        var feeders = new List<LineFeeder>();
        for (var p = 0; p < feederCount && !deviceLatency; p++)
        {
            feeders.Add(LineFeeder.Start(brokerPort, p)); // one costs least: ~28 µs per job at 5,000/s, four ~48 µs each
        }

        var metricsUri = new Uri($"http://127.0.0.1:{adminPort}/metrics");
        await SaturateAsync(clients, "warm", WarmUpJobs, window, http, metricsUri);

        Console.WriteLine($"| state directory | {stateRoot} |");
        Console.WriteLine($"| Mosquitto set_tcp_nodelay | {nodelay} |");
        Console.WriteLine($"| node DOTNET_GCgen0size | {(gen0Size.Length == 0 ? "runtime default" : gen0Size)} |");
        Console.WriteLine($"| start to ready (/readyz 200) | {readyMs:F0} ms |");
        if (only != "saturation")
        {
            // Steady state first: the short burst above leaves ~30 MB of LiteDB log to checkpoint in the background, and
            // the first seconds at a new rate still run tier-0 JIT code and grow the thread pool (the first 4 s at
            // 3,000 jobs/s had a p99 of 125 ms, the next 16 s 10-16 ms). Those seconds are run and not counted.
            List<ILoad> loaders = deviceLatency ? [.. clients] : [.. feeders];
            await OpenLoopAsync(loaders, rate, warmUpSeconds, "warm-open", http, metricsUri);
            var cpu = Cpu.Read(node.Id, broker.Id, feeders.Select(f => f.Id));
            var histogramBefore = await AcceptHistogram.ScrapeAsync(http, metricsUri);
            var open = await OpenLoopAsync(loaders, rate, seconds, "open", http, metricsUri);
            var nodeAccept = (await AcceptHistogram.ScrapeAsync(http, metricsUri)).Minus(histogramBefore);
            Console.WriteLine(deviceLatency
                ? $"| open loop: publishers | {publishers} MQTTnet devices, evenly spaced, each timing its accepted events |"
                : $"| open loop: publishers | {feederCount} mosquitto_pub -l, not subscribed to the events (the node's own histogram is the measure) |");
            Console.WriteLine($"| open loop: CPU per 1,000 jobs, daemon / Mosquitto / publishers | {Cpu.Read(node.Id, broker.Id, feeders.Select(f => f.Id)).PerThousand(cpu, rate * seconds)} ms |");
            Console.WriteLine($"| open loop: offered / accepted | {rate} / {rate * seconds / open.CommittedSeconds:F0} jobs/s for {seconds} s ({rate * seconds} jobs) |");
            Console.WriteLine($"| open loop: node accept latency (arrival -> commit + fsync -> PUBACK) p50 / p99, within 20 ms | {nodeAccept.Describe()} |");
            if (deviceLatency)
            {
                Console.WriteLine($"| open loop: device latency to the accepted event p50 / p99 / p99.9 / max | {Latency(open.Latencies)} ms |");
                Console.WriteLine($"| open loop: accepted events out of publish order | {open.OutOfOrder} |");
            }
        }

        if (only != "open")
        {
            var cpu = Cpu.Read(node.Id, broker.Id, feeders.Select(f => f.Id));
            var histogramBefore = await AcceptHistogram.ScrapeAsync(http, metricsUri);
            if (deviceLatency)
            {
                var saturation = await SaturateAsync(clients, "run", jobs, window, http, metricsUri);
                var nodeAccept = (await AcceptHistogram.ScrapeAsync(http, metricsUri)).Minus(histogramBefore);
                Console.WriteLine($"| saturation: CPU per 1,000 jobs, daemon / Mosquitto / publishers | {Cpu.Read(node.Id, broker.Id, feeders.Select(f => f.Id)).PerThousand(cpu, jobs)} ms |");
                Console.WriteLine($"| saturation: committed (metrics) / accepted events back | {jobs / saturation.CommittedSeconds:F0} / {jobs / saturation.AcceptedSeconds:F0} jobs/s ({jobs} jobs, {publishers} MQTTnet devices x {window} in flight) |");
                Console.WriteLine($"| saturation: node accept latency (arrival -> commit + fsync -> PUBACK) p50 / p99, within 20 ms | {nodeAccept.Describe()} |");
                Console.WriteLine($"| saturation: device latency to the accepted event p50 / p99 / p99.9 / max | {Latency(saturation.Latencies)} ms |");
                Console.WriteLine($"| saturation: accepted events out of publish order | {saturation.OutOfOrder} |");
            }
            else
            {
                // Every job written to the feeders at once: Mosquitto queues what the node has not taken yet (up to
                // 1,000 in flight to it), so the node commits as fast as it can.
                var before = await AcceptedTotalAsync(http, metricsUri);
                var flood = await SendAllAsync([.. feeders], "run", jobs, _ => _ => 0, http, metricsUri);
                var elapsed = flood.CommittedSeconds;
                var committed = await AcceptedTotalAsync(http, metricsUri) - before;
                var nodeAccept = (await AcceptHistogram.ScrapeAsync(http, metricsUri)).Minus(histogramBefore);
                Console.WriteLine($"| saturation: CPU per 1,000 jobs, daemon / Mosquitto / publishers | {Cpu.Read(node.Id, broker.Id, feeders.Select(f => f.Id)).PerThousand(cpu, jobs)} ms |");
                Console.WriteLine($"| saturation: committed (metrics) | {committed / elapsed:F0} jobs/s ({committed:F0} of {jobs} jobs, all offered at once by {feederCount} mosquitto_pub -l) |");
                Console.WriteLine($"| saturation: node accept latency (arrival -> commit + fsync -> PUBACK) p50 / p99, within 20 ms | {nodeAccept.Describe()} |");
            }
        }

        Console.WriteLine($"| RSS idle / after the runs | {idleRssMb:F0} / {RssMb(node.Id):F0} MB |");

        foreach (var c in clients)
        {
            await c.DisposeAsync();
        }

        foreach (var f in feeders)
        {
            await f.DisposeAsync();
        }

        node.Signal(15);
        await node.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Directory.Delete(state, recursive: true);
        Directory.Delete(confDir, recursive: true);
        return 0;
    }

    /// <summary>The value of <paramref name="name"/> in an <c>Environment=</c> line of packaging/systemd/edgenode.service, or null.</summary>
    private static string? UnitEnvironment(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var unit = Path.Combine(dir.FullName, "packaging", "systemd", "edgenode.service");
            if (File.Exists(unit))
            {
                return File.ReadLines(unit).Select(l => l.Trim()).Where(l => l.StartsWith("Environment=" + name + "=", StringComparison.Ordinal))
                    .Select(l => l[("Environment=" + name + "=").Length..]).FirstOrDefault();
            }
        }

        return null;
    }

    private sealed record RunResult(double CommittedSeconds, double AcceptedSeconds, double[] Latencies, int OutOfOrder);

    /// <summary>R jobs/s for S seconds, evenly spaced overall: publisher i sends at i/R, (i + P)/R, ...</summary>
    private static Task<RunResult> OpenLoopAsync(List<ILoad> clients, int rate, int seconds, string tag, HttpClient http, Uri metrics)
    {
        var interval = TimeSpan.TicksPerSecond * (double)clients.Count / rate;
        return SendAllAsync(clients, tag, rate * seconds, i => n => (long)((TimeSpan.TicksPerSecond * (double)i / rate) + (n * interval)), http, metrics);
    }

    /// <summary>Sends <paramref name="jobs"/> jobs split over the publishers, job n of publisher i at
    /// <paramref name="due"/>(i)(n) ticks, and returns once the node has answered every one of them.</summary>
    private static async Task<RunResult> SendAllAsync(List<ILoad> clients, string tag, int jobs, Func<int, Func<int, long>> due, HttpClient http, Uri metrics)
    {
        var before = await AcceptHistogram.CountAsync(http, metrics);
        var clock = Stopwatch.StartNew();
        var sends = clients.Select((c, i) =>
            c.SendScheduledAsync(tag, jobs / clients.Count + (i < jobs % clients.Count ? 1 : 0), due(i), clock)).ToList();
        await Task.WhenAll(sends);
        // Every job message has reached the node and been answered (the histogram counts each PUBACKed message).
        while (await AcceptHistogram.CountAsync(http, metrics) - before < jobs)
        {
            await Task.Delay(20);
        }

        var elapsed = clock.Elapsed.TotalSeconds;
        return new RunResult(elapsed, elapsed, [.. clients.SelectMany(c => c.Latencies)], clients.Sum(c => c.OutOfOrder));
    }

    private static async Task<RunResult> SaturateAsync(List<Publisher> clients, string tag, int jobs, int window, HttpClient http, Uri metrics)
    {
        var before = await AcceptedTotalAsync(http, metrics);
        var clock = Stopwatch.StartNew();
        var sends = clients.Select((c, i) => c.SendWindowedAsync(tag, jobs / clients.Count + (i < jobs % clients.Count ? 1 : 0), window, clock)).ToList();
        double committed = 0;
        while (committed == 0)
        {
            if (await AcceptedTotalAsync(http, metrics) - before >= jobs)
            {
                committed = clock.Elapsed.TotalSeconds;
            }
            else
            {
                await Task.Delay(50); // a scrape takes the metrics gate the ingest commit holds: poll gently
            }
        }

        await Task.WhenAll(sends);
        return new RunResult(committed, clock.Elapsed.TotalSeconds, [.. clients.SelectMany(c => c.Latencies)], clients.Sum(c => c.OutOfOrder));
    }

    private static string Latency(double[] latencies)
    {
        var sorted = latencies.Order().ToArray();
        return string.Create(CultureInfo.InvariantCulture,
            $"{Percentile(sorted, 0.50):F1} / {Percentile(sorted, 0.99):F1} / {Percentile(sorted, 0.999):F1} / {sorted[^1]:F1}");
    }

    private static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];

    private static async Task<double> AcceptedTotalAsync(HttpClient http, Uri metrics)
    {
        var text = await http.GetStringAsync(metrics);
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith("edgenode_jobs_accepted_total ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// The node's own <c>edgenode_ingest_accept_seconds</c> histogram (arrival of a job message to its PUBACK, after the
    /// commit and fsync): cumulative bucket counts by upper bound in seconds, from one <c>/metrics</c> scrape.
    /// </summary>
    private sealed record AcceptHistogram(SortedDictionary<double, double> Buckets)
    {
        private const string Prefix = "edgenode_ingest_accept_seconds_bucket{le=\"";

        public static async Task<AcceptHistogram> ScrapeAsync(HttpClient http, Uri metrics)
        {
            var buckets = new SortedDictionary<double, double>();
            foreach (var line in (await http.GetStringAsync(metrics)).Split('\n'))
            {
                if (line.StartsWith(Prefix, StringComparison.Ordinal))
                {
                    var bound = line[Prefix.Length..line.IndexOf('"', Prefix.Length)];
                    buckets[bound == "+Inf" ? double.PositiveInfinity : double.Parse(bound, CultureInfo.InvariantCulture)] =
                        double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
                }
            }

            return new AcceptHistogram(buckets);
        }

        /// <summary>Job messages the node has answered so far (the histogram's +Inf bucket).</summary>
        public static async Task<double> CountAsync(HttpClient http, Uri metrics) =>
            (await ScrapeAsync(http, metrics)).Buckets.GetValueOrDefault(double.PositiveInfinity);

        public AcceptHistogram Minus(AcceptHistogram before) =>
            new(new SortedDictionary<double, double>(Buckets.ToDictionary(b => b.Key, b => b.Value - before.Buckets.GetValueOrDefault(b.Key))));

        /// <summary>p50 and p99 in ms, interpolated linearly inside a bucket as Prometheus' histogram_quantile does, and
        /// the exact share of jobs PUBACKed within 20 ms (a bucket bound).</summary>
        public string Describe()
        {
            var total = Buckets.GetValueOrDefault(double.PositiveInfinity);
            if (total == 0)
            {
                return "no observations";
            }

            return string.Create(CultureInfo.InvariantCulture,
                $"{Quantile(0.50) * 1000:F1} / {Quantile(0.99) * 1000:F1} ms, {100 * Buckets.GetValueOrDefault(0.02) / total:F2} % ({total:F0} jobs)");
        }

        private double Quantile(double q)
        {
            var rank = q * Buckets[double.PositiveInfinity];
            var (lower, below) = (0.0, 0.0);
            foreach (var (bound, count) in Buckets)
            {
                if (count >= rank)
                {
                    return double.IsPositiveInfinity(bound) ? lower : lower + ((bound - lower) * (rank - below) / Math.Max(count - below, 1));
                }

                (lower, below) = (bound, count);
            }

            return lower;
        }
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

    /// <summary>CPU seconds used so far by the daemon, Mosquitto and the publishers (this process and any mosquitto_pub).</summary>
    private readonly record struct Cpu(double Daemon, double Broker, double Publishers)
    {
        /// <param name="feeders">The mosquitto_pub processes, counted with this process as the publishers.</param>
        public static Cpu Read(int daemon, int broker, IEnumerable<int> feeders) =>
            new(CpuSeconds(daemon), CpuSeconds(broker), Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds + feeders.Sum(CpuSeconds));

        public string PerThousand(Cpu before, int jobs) => string.Create(CultureInfo.InvariantCulture,
            $"{(Daemon - before.Daemon) * 1e6 / jobs:F0} / {(Broker - before.Broker) * 1e6 / jobs:F0} / {(Publishers - before.Publishers) * 1e6 / jobs:F0}");
    }

    /// <summary>User + system CPU seconds of a process so far (/proc/PID/stat fields 14 and 15, in USER_HZ = 100/s).</summary>
    private static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    private static double RssMb(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    private static string JobPayload(string id, int i) =>
        $$"""{"id":"{{id}}","prompt":"Sensor {{i}} reads 42.5 degrees and","max_new_tokens":16}""";

    /// <summary>Sends jobs on a schedule; what an open-loop run drives.</summary>
    private interface ILoad
    {
        /// <summary>Device latencies to the accepted event in ms (empty when the load does not subscribe).</summary>
        IReadOnlyCollection<double> Latencies { get; }

        int OutOfOrder { get; }

        /// <summary>Job n is due at <paramref name="dueTicks"/>(n) on <paramref name="clock"/> and is sent then (or at
        /// once, when the sender fell behind), whatever the node does.</summary>
        Task SendScheduledAsync(string tag, int count, Func<int, long> dueTicks, Stopwatch clock);
    }

    /// <summary>
    /// A load generator that is not a device: one <c>mosquitto_pub -l</c> (libmosquitto, MQTT 5, QoS 1, up to 1,000
    /// messages in flight), fed one job per line through its stdin at the job's due time. It costs ~10 µs of CPU per
    /// message where an MQTTnet client publishing and timing its accepted events costs ~90 µs, CPU the node and
    /// Mosquitto share on this 2-core machine; it does not subscribe to the accepted events, so the node's own
    /// <c>edgenode_ingest_accept_seconds</c> histogram is the measure (the device latency needs <c>--device-latency true</c>).
    /// </summary>
    private sealed class LineFeeder : ILoad, IAsyncDisposable
    {
        private readonly ProcessRunner _process;
        private readonly string _name;

        private LineFeeder(ProcessRunner process, string name)
        {
            _process = process;
            _name = name;
        }

        public int Id => _process.Id;

        public IReadOnlyCollection<double> Latencies => [];

        public int OutOfOrder => 0;

        public static LineFeeder Start(int port, int index)
        {
            var name = "feeder-" + index.ToString(CultureInfo.InvariantCulture);
            var process = ProcessRunner.Start("mosquitto_pub",
                ["-h", "127.0.0.1", "-p", port.ToString(CultureInfo.InvariantCulture), "-V", "mqttv5", "-i", "bench-" + name,
                 "-q", "1", "-M", "1000", "-t", "edgenode/jobs", "-D", "publish", "response-topic", $"bench/{name}/replies", "-l"]);
            return new LineFeeder(process, name);
        }

        public async Task SendScheduledAsync(string tag, int count, Func<int, long> dueTicks, Stopwatch clock)
        {
            // Built before the clock matters, so a send is one write of the lines due.
            var lines = Enumerable.Range(0, count)
                .Select(n => Encoding.UTF8.GetBytes(JobPayload($"{tag}-{_name}-{n.ToString(CultureInfo.InvariantCulture)}", n) + "\n"))
                .ToArray();
            var stdin = _process.StandardInput.BaseStream;
            var i = 0;
            while (i < count)
            {
                var now = clock.Elapsed.Ticks;
                while (i < count && dueTicks(i) <= now)
                {
                    stdin.Write(lines[i]);
                    i++;
                }

                await stdin.FlushAsync();
                if (_process.Exited.IsCompleted)
                {
                    throw new InvalidOperationException("mosquitto_pub exited:\n" + string.Join('\n', _process.Lines));
                }

                if (i < count)
                {
                    var wait = TimeSpan.FromTicks(dueTicks(i) - clock.Elapsed.Ticks);
                    await Task.Delay(wait > TimeSpan.FromMilliseconds(1) ? wait : TimeSpan.FromMilliseconds(1));
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            _process.StandardInput.Close(); // mosquitto_pub sends what it has read and exits
            await _process.WaitForExitAsync(TimeSpan.FromSeconds(30));
            await _process.DisposeAsync();
        }
    }

    /// <summary>One MQTT 5 device: publishes jobs at QoS 1 with a Response Topic and times each until its accepted event.</summary>
    private sealed class Publisher : ILoad, IAsyncDisposable
    {
        private readonly IMqttClient _client;
        private readonly string _replyTopic;
        private readonly string _name;
        private readonly ConcurrentDictionary<string, long> _sentAt = new(StringComparer.Ordinal);
        private SemaphoreSlim _window = new(1);
        private Stopwatch _clock = Stopwatch.StartNew();
        private TaskCompletionSource _done = new();
        private int _remaining;
        private int _lastIndex;
        private int _outOfOrder;

        private Publisher(IMqttClient client, string name)
        {
            _client = client;
            _name = name;
            _replyTopic = $"bench/{name}/replies";
            _client.ApplicationMessageReceivedAsync += e =>
            {
                var id = Encoding.UTF8.GetString(e.ApplicationMessage.CorrelationData);
                using var doc = JsonDocument.Parse(e.ApplicationMessage.Payload.ToArray());
                if (doc.RootElement.GetProperty("type").GetString() == "accepted" && _sentAt.TryRemove(id, out var sent))
                {
                    Latencies.Add((_clock.Elapsed.Ticks - sent) / (double)TimeSpan.TicksPerMillisecond);
                    var index = int.Parse(id.AsSpan(id.LastIndexOf('-') + 1), CultureInfo.InvariantCulture);
                    if (index < _lastIndex)
                    {
                        _outOfOrder++;
                    }

                    _lastIndex = index;
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

        IReadOnlyCollection<double> ILoad.Latencies => Latencies;

        public int OutOfOrder => _outOfOrder;

        public static async Task<Publisher> ConnectAsync(int port, int index)
        {
            var client = new MqttClientFactory().CreateMqttClient();
            var name = index.ToString(CultureInfo.InvariantCulture);
            await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port)
                .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
                .WithClientId("bench-publisher-" + name).WithCleanStart(true).Build());
            await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(f => f.WithTopic($"bench/{name}/replies").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)).Build());
            return new Publisher(client, name);
        }

        /// <summary>Closed loop: at most <paramref name="window"/> jobs without their accepted event.</summary>
        public async Task SendWindowedAsync(string tag, int count, int window, Stopwatch clock)
        {
            Reset(tag, count, clock, window);
            for (var i = 0; i < count; i++)
            {
                await _window.WaitAsync();
                Publish(tag, i, _clock.Elapsed.Ticks);
            }

            await _done.Task.WaitAsync(TimeSpan.FromMinutes(5));
        }

        /// <summary>
        /// Open loop: job n is due at <paramref name="dueTicks"/>(n) on <paramref name="clock"/> and is sent then (or at
        /// once, when the sender fell behind), whatever the node does; its latency counts from the due time.
        /// </summary>
        public async Task SendScheduledAsync(string tag, int count, Func<int, long> dueTicks, Stopwatch clock)
        {
            Reset(tag, count, clock, int.MaxValue);
            var i = 0;
            while (i < count)
            {
                var now = _clock.Elapsed.Ticks;
                while (i < count && dueTicks(i) <= now)
                {
                    Publish(tag, i, dueTicks(i));
                    i++;
                }

                if (i < count)
                {
                    // Sleep (never spin: a spinning publisher took ~1/3 of the CPU the daemon and Mosquitto share on
                    // 2 cores); a timer fires up to ~1 ms late, which counts against the node in the latency.
                    var wait = TimeSpan.FromTicks(dueTicks(i) - _clock.Elapsed.Ticks);
                    await Task.Delay(wait > TimeSpan.FromMilliseconds(1) ? wait : TimeSpan.FromMilliseconds(1));
                }
            }

            await _done.Task.WaitAsync(TimeSpan.FromMinutes(5));
        }

        public async ValueTask DisposeAsync()
        {
            await _client.DisconnectAsync();
            _client.Dispose();
        }

        private void Reset(string tag, int count, Stopwatch clock, int window)
        {
            _ = tag;
            _clock = clock;
            _window = new SemaphoreSlim(Math.Min(window, 1_000_000));
            _done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Latencies = [];
            _remaining = count;
            _lastIndex = -1;
            _outOfOrder = 0;
        }

        private void Publish(string tag, int i, long sentAtTicks)
        {
            var id = $"{tag}-{_name}-{i.ToString(CultureInfo.InvariantCulture)}";
            _sentAt[id] = sentAtTicks;
            _ = _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("edgenode/jobs").WithPayload(JobPayload(id, i))
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .WithResponseTopic(_replyTopic).WithCorrelationData(Encoding.UTF8.GetBytes(id)).Build());
        }
    }
}
