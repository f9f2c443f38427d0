using System.Diagnostics;
using System.Globalization;
using System.Text;
using EdgeNode.TestSupport;

namespace EdgeNode.Benchmarks.Offload;

/// <summary>
/// End-to-end offload load benchmark (issue 5 item 5, DESIGN.md §5; results in docs/BENCHMARKS.md "Offload (end to
/// end)"). Real processes on loopback: Mosquitto (the broker), <c>edgenode-relay</c> (Kestrel on 127.0.0.1, the
/// embedded backend on the tiny model with 1 intra-op thread), and a fresh <c>edgenode run</c> daemon per measurement
/// (tiny INT8 model, LiteDB store in a temporary directory); this process is the device, an MQTTnet client.
/// <para>1. Calibration: a daemon without offload is kept busy (closed loop, <c>--outstanding</c> jobs in flight) for
/// <c>--calibrate-seconds</c>; μ = jobs completed / executor busy seconds (<c>edgenode_executor_busy_seconds_total</c>),
/// i.e. the local service rate for this job mix on this machine.</para>
/// <para>2. For each mode (without, with offload) and each λ = factor × μ: Poisson arrivals (exponential gaps,
/// seeded: the same arrival times and jobs in both modes) for <c>--seconds</c>, each job with
/// <c>deadline_ms</c> = <c>--deadline-factor</c> / μ; then the client waits for every job's final event.
/// Reported: latency (publish to final event at the client) p50/p95/p99 of SUCCEEDED jobs, the share of jobs that
/// succeeded within their deadline, TIMED_OUT jobs, the share routed to the relay, local utilization = executor
/// busy seconds / wall seconds over the arrival window, jobs lost = published − jobs with a final event, and the CPU
/// (cores) the relay, the daemon and the broker used over the window.</para>
/// </summary>
/// <remarks>
/// Usage: <c>offload [--seconds 60] [--rates 0.5,0.9,2] [--modes off,on] [--seed 42] [--calibrate-seconds 20]
/// [--deadline-factor 10] [--relay-slots 2] [--pin] [--logs DIR]</c>. Needs <c>/usr/sbin/mosquitto</c> and the daemon and
/// relay built in the same configuration as this tool (the project references build them).
/// <para><c>--pin</c> gives the relay a CPU of its own, as a relay on its own machine would have: the relay runs on CPU 1
/// (<c>taskset -c 1</c>), the daemon (with 1 intra-op thread), the broker and this client on CPU 0, so μ is the
/// node's rate on one core and the relay's work no longer slows the node's executor. Needs 2 CPUs and <c>taskset</c>
/// (util-linux).</para>
/// </remarks>
internal static class OffloadBenchmark
{
    private const string DeviceId = "bench";
    private static readonly string DeviceKey = Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
    private static readonly int[] TokenMix = [16, 32, 48];
    private static readonly string[] Prompts =
    [
        "The sensor on the north gate reports",
        "Summarise the last hour of readings:",
        "Hello, my name is",
        "Temperature is rising in room four because",
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        var settings = BenchSettings.Parse(args);
        var root = RepoRoot();
        var configuration = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd('/'))!);
        var daemonDll = Path.Combine(root, "daemon", "EdgeNode.Daemon", "bin", configuration, "net10.0", "edgenode.dll");
        var relayDll = Path.Combine(root, "cloud-relay", "EdgeNode.CloudRelay", "bin", configuration, "net10.0", "edgenode-relay.dll");
        foreach (var file in new[] { daemonDll, relayDll, "/usr/sbin/mosquitto" })
        {
            if (!File.Exists(file))
            {
                Console.Error.WriteLine($"offload: {file} is missing (build with -c {configuration}; apt-get install mosquitto)");
                return 2;
            }
        }

        var work = Directory.CreateTempSubdirectory("edgenode-offload-bench-").FullName;
        var logs = settings.Logs ?? work;
        Directory.CreateDirectory(logs);
        // The tiny INT8 model with its LM head in FP32 (the demonstration default before 2026-11-29): kept so that the
        // offload figures in docs/BENCHMARKS.md stay comparable.
        var model = Models.TinyInt8;
        if (settings.Pin && OperatingSystem.IsLinux())
        {
            using var self = Process.GetCurrentProcess();
            self.ProcessorAffinity = NodeCpuMask;
        }

        Console.WriteLine($"# offload benchmark {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {configuration}, logs in {logs}");
        Console.WriteLine($"# machine: {CpuModel()}, {Environment.ProcessorCount} cores, load average {LoadAverage()}");
        Console.WriteLine(settings.Pin
            ? "# pinned: relay on CPU 1; daemon (1 intra-op thread), broker and client on CPU 0"
            : "# not pinned: every process may use both CPUs (the relay shares the node's cores)");
        Console.WriteLine($"# command: offload {string.Join(' ', args)}");

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        await using var broker = await StartBrokerAsync(work, logs, settings.Pin);
        await using var relay = await StartRelayAsync(http, relayDll, model, work, logs, settings.RelaySlots, settings.Pin);
        await using var client = await LoadClient.ConnectAsync(broker.Port);

        var calibration = await CalibrateAsync(http, client, daemonDll, model, broker.Port, work, logs, settings);
        var deadlineMs = (int)Math.Round(settings.DeadlineFactor * calibration.MeanServiceMs);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"# calibration: {calibration.Jobs} jobs in {calibration.BusySeconds:F1} busy s => mu = {calibration.Mu:F2} jobs/s (mean service {calibration.MeanServiceMs:F1} ms, {calibration.TokensPerJob:F1} tokens/job); deadline_ms = {settings.DeadlineFactor} x mean service = {deadlineMs}"));

        var rows = new List<Row>();
        foreach (var mode in settings.Modes)
        {
            for (var r = 0; r < settings.Rates.Count; r++)
            {
                var factor = settings.Rates[r];
                var row = await MeasureAsync(http, client, relay, daemonDll, model, broker, work, logs, settings, mode == "on",
                    factor, factor * calibration.Mu, deadlineMs, settings.Seed + r);
                rows.Add(row);
                Console.WriteLine(row.ToMarkdown());
            }
        }

        Console.WriteLine();
        Console.WriteLine("| offload | λ/μ | λ jobs/s | published | succeeded | within deadline | TIMED_OUT | p50 ms | p95 ms | p99 ms | p95 local / relay ms | routed to relay | succeeded local / relay | local utilization | daemon's μ at end | lost | dup finals | CPU relay / daemon / broker (cores) | load avg end |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var row in rows)
        {
            Console.WriteLine(row.ToMarkdown());
        }

        return rows.All(r => r.Lost == 0) ? 0 : 1;
    }

    private sealed record Calibration(int Jobs, double BusySeconds, double Mu, double MeanServiceMs, double TokensPerJob);

    private static async Task<Calibration> CalibrateAsync(HttpClient http, LoadClient client, string daemonDll, string model, int brokerPort,
        string work, string logs, BenchSettings settings)
    {
        var daemon = await StartDaemonAsync(http, daemonDll, model, brokerPort, work, logs, "calibrate", relayPort: null, settings.Pin);
        await using (daemon.Process)
        {
            var random = new Random(settings.Seed - 1);
            var next = 0;
            async Task RunOneAsync(string id, int tokens)
            {
                await client.PublishAsync(id, Payload(id, tokens, next, deadlineMs: null));
            }

            // Warm-up (first ORT runs, JIT), then a closed loop with a few jobs outstanding so the executor never idles.
            for (var i = 0; i < 10; i++)
            {
                await RunOneAsync("warm-" + i.ToString(CultureInfo.InvariantCulture), 32);
            }

            await WaitForFinalsAsync(client, 10, TimeSpan.FromSeconds(120));
            client.Reset();
            var before = await Scrape(http, daemon.AdminUrl);
            var started = Stopwatch.GetTimestamp();
            var published = 0;
            while (Stopwatch.GetElapsedTime(started).TotalSeconds < settings.CalibrateSeconds)
            {
                while (published - client.FinalsSeen < settings.Outstanding)
                {
                    await RunOneAsync("cal-" + (next++).ToString(CultureInfo.InvariantCulture), TokenMix[random.Next(TokenMix.Length)]);
                    published++;
                }

                await Task.Delay(2);
            }

            await WaitForFinalsAsync(client, published, TimeSpan.FromSeconds(120));
            var after = await Scrape(http, daemon.AdminUrl);
            var jobs = (int)(after.Get("edgenode_jobs_succeeded_total") - before.Get("edgenode_jobs_succeeded_total"));
            var busy = after.Get("edgenode_executor_busy_seconds_total") - before.Get("edgenode_executor_busy_seconds_total");
            var tokens = after.Get("edgenode_tokens_generated_total") - before.Get("edgenode_tokens_generated_total");
            client.Reset();
            return new Calibration(jobs, busy, jobs / busy, busy * 1000 / jobs, tokens / jobs);
        }
    }

    private sealed record Row(
        bool Offload, double Factor, double Lambda, int Published, int Succeeded, int WithinDeadline, int TimedOut,
        double P50, double P95, double P99, int RoutedRelay, double Utilization, int Lost, int Duplicates,
        double RelayCores, double DaemonCores, double BrokerCores, string LoadAverage, string OtherErrors, int RanLocal, int RanRelay, double MuEnd,
        double P95Local, double P95Relay)
    {
        public string ToMarkdown() => string.Create(CultureInfo.InvariantCulture,
            $"| {(Offload ? "on" : "off")} | {Factor:0.0#} | {Lambda:F1} | {Published} | {Succeeded} | {Percent(WithinDeadline, Published)} | {TimedOut}{OtherErrors} | {P50:F0} | {P95:F0} | {P99:F0} | {P95Local:F0} / {P95Relay:F0} | {Percent(RoutedRelay, Published)} | {RanLocal} / {RanRelay} | {Utilization * 100:F1} % | {MuEnd:F1} | {Lost} | {Duplicates} | {RelayCores:F2} / {DaemonCores:F2} / {BrokerCores:F2} | {LoadAverage} |");

        private static string Percent(int part, int whole) => whole == 0 ? "-" : string.Create(CultureInfo.InvariantCulture, $"{100.0 * part / whole:F1} %");
    }

    private static async Task<Row> MeasureAsync(HttpClient http, LoadClient client, ChildProcess relay, string daemonDll, string model,
        Broker broker, string work, string logs, BenchSettings settings, bool offload, double factor, double lambda, int deadlineMs, int seed)
    {
        var name = string.Create(CultureInfo.InvariantCulture, $"{(offload ? "on" : "off")}-{factor:0.0#}");
        var daemon = await StartDaemonAsync(http, daemonDll, model, broker.Port, work, logs, name, offload ? relay.Port : null, settings.Pin);
        await using (daemon.Process)
        {
            // Warm-up: the daemon's μ estimate is known before the load starts (as on a node that has been running).
            for (var i = 0; i < 5; i++)
            {
                var id = "warm-" + name + "-" + i.ToString(CultureInfo.InvariantCulture);
                await client.PublishAsync(id, Payload(id, 32, i, deadlineMs: null));
            }

            await WaitForFinalsAsync(client, 5, TimeSpan.FromSeconds(120));
            client.Reset();

            // The same seeded Poisson arrivals and jobs for both modes at this rate.
            var random = new Random(seed);
            var schedule = new List<double>();
            for (var t = -Math.Log(1 - random.NextDouble()) / lambda; t < settings.Seconds; t += -Math.Log(1 - random.NextDouble()) / lambda)
            {
                schedule.Add(t);
            }

            var jobs = schedule.Select((_, k) => (Id: name + "-" + k.ToString(CultureInfo.InvariantCulture), Tokens: TokenMix[random.Next(TokenMix.Length)])).ToList();
            var before = await Scrape(http, daemon.AdminUrl);
            var cpuBefore = (relay.CpuTime, daemon.Process.CpuTime, broker.Process.CpuTime);
            var started = Stopwatch.GetTimestamp();
            var publishes = new List<Task>(jobs.Count);
            for (var k = 0; k < jobs.Count; k++)
            {
                var wait = schedule[k] - Stopwatch.GetElapsedTime(started).TotalSeconds;
                if (wait > 0.001)
                {
                    await Task.Delay(TimeSpan.FromSeconds(wait));
                }

                publishes.Add(client.PublishAsync(jobs[k].Id, Payload(jobs[k].Id, jobs[k].Tokens, k, deadlineMs)));
            }

            var remaining = settings.Seconds - Stopwatch.GetElapsedTime(started).TotalSeconds;
            if (remaining > 0)
            {
                await Task.Delay(TimeSpan.FromSeconds(remaining));
            }

            var wall = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var after = await Scrape(http, daemon.AdminUrl);
            var cpuAfter = (relay.CpuTime, daemon.Process.CpuTime, broker.Process.CpuTime);
            var load = LoadAverage();
            await Task.WhenAll(publishes);
            await WaitForFinalsAsync(client, jobs.Count, TimeSpan.FromSeconds(300));

            var traces = client.Jobs.ToList();
            var succeeded = traces.Where(t => t.Status == "SUCCEEDED").ToList();
            var latencies = succeeded.Select(t => t.LatencyMs).Order().ToArray();
            var others = traces.Where(t => t.FinalAt != 0 && t.Status is not ("SUCCEEDED" or "TIMED_OUT"))
                .GroupBy(t => t.ErrorCode ?? t.Status ?? "?").Select(g => $"{g.Key} {g.Count()}").ToList();
            var row = new Row(
                offload, factor, lambda, jobs.Count, succeeded.Count,
                succeeded.Count(t => t.LatencyMs <= deadlineMs),
                traces.Count(t => t.Status == "TIMED_OUT"),
                Percentile(latencies, 0.50), Percentile(latencies, 0.95), Percentile(latencies, 0.99),
                traces.Count(t => t.Route == "relay"),
                (after.Get("edgenode_executor_busy_seconds_total") - before.Get("edgenode_executor_busy_seconds_total")) / wall,
                jobs.Count - traces.Count(t => t.FinalAt != 0),
                traces.Sum(t => Math.Max(0, t.Finals - 1)),
                (cpuAfter.Item1 - cpuBefore.Item1).TotalSeconds / wall,
                (cpuAfter.Item2 - cpuBefore.Item2).TotalSeconds / wall,
                (cpuAfter.Item3 - cpuBefore.Item3).TotalSeconds / wall,
                load,
                others.Count == 0 ? "" : " (+ " + string.Join(", ", others) + ")",
                succeeded.Count(t => t.ExecutedOn == "local"),
                succeeded.Count(t => t.ExecutedOn == "relay"),
                after.Get("edgenode_service_rate"),
                Percentile(succeeded.Where(t => t.ExecutedOn == "local").Select(t => t.LatencyMs).Order().ToArray(), 0.95),
                Percentile(succeeded.Where(t => t.ExecutedOn == "relay").Select(t => t.LatencyMs).Order().ToArray(), 0.95));
            client.Reset();
            return row;
        }
    }

    private static byte[] Payload(string id, int maxNewTokens, int seed, int? deadlineMs)
    {
        var deadline = deadlineMs is { } d ? string.Create(CultureInfo.InvariantCulture, $",\"deadline_ms\":{d}") : "";
        return Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"{{\"id\":\"{id}\",\"prompt\":\"{Prompts[seed % Prompts.Length]}\",\"max_new_tokens\":{maxNewTokens},\"seed\":{seed}{deadline},\"reply_to\":\"bench/replies/{id}\"}}"));
    }

    private static async Task WaitForFinalsAsync(LoadClient client, int count, TimeSpan timeout)
    {
        var started = Stopwatch.GetTimestamp();
        while (client.FinalsSeen < count && Stopwatch.GetElapsedTime(started) < timeout)
        {
            await Task.Delay(20);
        }
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];

    private sealed record Daemon(ChildProcess Process, Uri AdminUrl);

    private const string NodeCpus = "0";
    private const string RelayCpus = "1";
    private static readonly IntPtr NodeCpuMask = 1;

    /// <summary>Starts <paramref name="fileName"/> under <c>taskset -c <paramref name="cpus"/></c> when pinning (taskset execs it: same pid).</summary>
    private static ChildProcess StartPinned(string name, string fileName, List<string> arguments, string logPath, string? cpus) =>
        cpus is null
            ? ChildProcess.Start(name, fileName, arguments, logPath)
            : ChildProcess.Start(name, "taskset", ["-c", cpus, fileName, .. arguments], logPath);

    private static async Task<Daemon> StartDaemonAsync(HttpClient http, string daemonDll, string model, int brokerPort, string work, string logs,
        string name, int? relayPort, bool pin)
    {
        var adminPort = ChildProcess.FreeLoopbackPort();
        var state = Path.Combine(work, "node-" + name);
        Directory.CreateDirectory(state);
        List<string> arguments =
        [
            daemonDll, "run",
            "--Node:Id=bench-node",
            "--Node:StateDirectory=" + state,
            "--Inference:ModelPath=" + model,
            "--Mqtt:Host=127.0.0.1",
            "--Mqtt:Port=" + brokerPort.ToString(CultureInfo.InvariantCulture),
            "--Admin:Url=http://127.0.0.1:" + adminPort.ToString(CultureInfo.InvariantCulture),
            "--Logging:LogLevel:Default=Warning",
        ];
        if (relayPort is { } port)
        {
            arguments.Add("--Offload:RelayUrl=http://127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture));
            arguments.Add("--Offload:DeviceId=" + DeviceId);
            arguments.Add("--Offload:DeviceKey=" + DeviceKey);
        }

        if (pin)
        {
            arguments.Add("--Inference:IntraOpThreads=1");
        }

        var process = StartPinned("daemon " + name, "dotnet", arguments, Path.Combine(logs, "daemon-" + name + ".log"), pin ? NodeCpus : null);
        var admin = new Uri($"http://127.0.0.1:{adminPort}/");
        await process.WaitReadyAsync(http, new Uri(admin, "readyz"), TimeSpan.FromSeconds(120));
        return new Daemon(process, admin);
    }

    private sealed record Broker(ChildProcess Process, int Port) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Process.DisposeAsync();
    }

    private static async Task<Broker> StartBrokerAsync(string work, string logs, bool pin)
    {
        var port = ChildProcess.FreeLoopbackPort();
        var conf = Path.Combine(work, "mosquitto.conf");
        await File.WriteAllTextAsync(conf, string.Create(CultureInfo.InvariantCulture,
            $"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 0\n"));
        var process = StartPinned("mosquitto", "/usr/sbin/mosquitto", ["-c", conf], Path.Combine(logs, "mosquitto.log"), pin ? NodeCpus : null);
        await process.WaitListeningAsync(port, TimeSpan.FromSeconds(30));
        return new Broker(process, port);
    }

    private static async Task<ChildProcess> StartRelayAsync(HttpClient http, string relayDll, string model, string work, string logs, int slots, bool pin)
    {
        var port = ChildProcess.FreeLoopbackPort();
        var state = Path.Combine(work, "relay");
        Directory.CreateDirectory(state);
        var process = StartPinned("relay", "dotnet",
        [
            relayDll,
            "--Relay:Url=http://127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture),
            "--Relay:StateDirectory=" + state,
            "--Relay:Embedded:ModelPath=" + model,
            "--Relay:Embedded:IntraOpThreads=1",
            "--Relay:MaxConcurrentJobs=" + slots.ToString(CultureInfo.InvariantCulture),
            "--Relay:Devices:" + DeviceId + ":Key=" + DeviceKey,
            "--Relay:Devices:" + DeviceId + ":RequestsPerMinute=1000000",
            "--Logging:LogLevel:Default=Warning",
        ], Path.Combine(logs, "relay.log"), pin ? RelayCpus : null);
        await process.WaitReadyAsync(http, new Uri($"http://127.0.0.1:{port}/readyz"), TimeSpan.FromSeconds(120));
        process.Port = port;
        return process;
    }

    private sealed class Samples(Dictionary<string, double> values)
    {
        /// <summary>The value of a sample, or the sum over its labelled series; 0 when absent.</summary>
        public double Get(string name) =>
            values.TryGetValue(name, out var v) ? v : values.Where(kv => kv.Key.StartsWith(name + "{", StringComparison.Ordinal)).Sum(kv => kv.Value);
    }

    private static async Task<Samples> Scrape(HttpClient http, Uri admin)
    {
        var text = await http.GetStringAsync(new Uri(admin, "metrics"));
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var space = line.LastIndexOf(' ');
            if (space > 0 && double.TryParse(line[(space + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                values[line[..space]] = value;
            }
        }

        return new Samples(values);
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "EdgeNode.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("EdgeNode.sln not found above " + AppContext.BaseDirectory);
    }

    private static string CpuModel() =>
        File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    private sealed record BenchSettings(int Seconds, IReadOnlyList<double> Rates, IReadOnlyList<string> Modes, int Seed, int CalibrateSeconds,
        double DeadlineFactor, int RelaySlots, int Outstanding, string? Logs, bool Pin)
    {
        public static BenchSettings Parse(string[] args)
        {
            string Text(string name, string fallback)
            {
                var i = Array.IndexOf(args, name);
                return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
            }

            var logs = Text("--logs", "");
            return new BenchSettings(
                int.Parse(Text("--seconds", "60"), CultureInfo.InvariantCulture),
                Text("--rates", "0.5,0.9,2").Split(',').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToList(),
                Text("--modes", "off,on").Split(','),
                int.Parse(Text("--seed", "42"), CultureInfo.InvariantCulture),
                int.Parse(Text("--calibrate-seconds", "20"), CultureInfo.InvariantCulture),
                double.Parse(Text("--deadline-factor", "10"), CultureInfo.InvariantCulture),
                int.Parse(Text("--relay-slots", "2"), CultureInfo.InvariantCulture),
                int.Parse(Text("--outstanding", "3"), CultureInfo.InvariantCulture),
                logs.Length == 0 ? null : logs,
                args.Contains("--pin"));
        }
    }
}
