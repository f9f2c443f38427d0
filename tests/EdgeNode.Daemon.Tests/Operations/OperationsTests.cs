using System.Diagnostics;
using System.Text;
using System.Text.Json;
using EdgeNode.Daemon.Client;
using EdgeNode.Daemon.Tests.EndToEnd;
using EdgeNode.TestSupport;
using MQTTnet;

namespace EdgeNode.Daemon.Tests.Operations;

/// <summary>Bounded queue, deadlines, metrics, status: ../shared/cases/durability.md 6 and operations.md 1.</summary>
[Collection("Daemon")]
public sealed class OperationsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(180);

    /// <summary>durability.md 6: a job with deadline_ms 200 queued behind jobs that take seconds ends TIMED_OUT and is never decoded.</summary>
    [Fact]
    public async Task ExpiredJob_BehindLongJobs_TimedOutAndNeverRun()
    {
        await using var daemon = await DaemonHarness.StartWithTestHooksAsync(extra: new Dictionary<string, string?> { ["Testing:DecodeStepDelayMs"] = "2" });
        await using var client = await daemon.ConnectClientAsync();

        var wall = Stopwatch.StartNew();

        // Two long jobs first (1,000 tokens each: seconds of decode), then the short-deadline job.
        var long1 = client.RunAsync(Utf8("""{"id":"long-1","prompt":"a","max_new_tokens":1000,"temperature":0}"""), Timeout);
        var long2 = client.RunAsync(Utf8("""{"id":"long-2","prompt":"b","max_new_tokens":1000,"temperature":0}"""), Timeout);
        var expired = await client.RunAsync(Utf8("""{"id":"short-deadline","prompt":"c","max_new_tokens":5,"deadline_ms":200}"""), Timeout);
        await Task.WhenAll(long1, long2);

        Assert.Equal(["accepted", "error"], expired.Select(e => e.Type));
        using var doc = JsonDocument.Parse(expired[1].Json);
        Assert.Equal("TIMED_OUT", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal("deadline_exceeded", doc.RootElement.GetProperty("error").GetProperty("code").GetString());

        // No decode ever started for it: every generated token belongs to the two long jobs.
        using var metrics = new MetricsScraper(daemon.AdminUrl);
        var samples = await metrics.ScrapeAsync();
        var longTokens = (await long1).Concat(await long2).Where(e => e.Type == "result")
            .Sum(e => JsonDocument.Parse(e.Json).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(longTokens, MetricsScraper.Get(samples, "edgenode_tokens_generated_total"));
        Assert.Equal(1, MetricsScraper.Get(samples, "edgenode_jobs_expired_total"));

        // Busy time: at least the 2 ms the test hook sleeps after each decoded token, at most the time since the start.
        Assert.InRange(MetricsScraper.Get(samples, "edgenode_executor_busy_seconds_total"), longTokens * 0.002, wall.Elapsed.TotalSeconds);
    }

    /// <summary>DESIGN.md §4.4: beyond Queue:MaxJobs new jobs get queue_full at once; queued ones still finish.</summary>
    [Fact]
    public async Task QueueFull_BeyondMaxJobs_RejectedAtOnce_QueuedJobsFinish()
    {
        await using var daemon = await DaemonHarness.StartWithTestHooksAsync(extra: new Dictionary<string, string?> { ["Queue:MaxJobs"] = "1", ["Testing:DecodeStepDelayMs"] = "2" });
        await using var client = await daemon.ConnectClientAsync();

        // The first job runs long, so the next one waits in the queue and the third finds it full.
        var running = client.RunAsync(Utf8("""{"id":"q-run","prompt":"a","max_new_tokens":1000,"temperature":0}"""), Timeout);
        await WaitUntilAsync(() => daemon.Store.Get("q-run")?.Status == "IN_PROGRESS");
        var queued = client.RunAsync(Utf8("""{"id":"q-1","prompt":"b","max_new_tokens":2}"""), Timeout);
        await WaitUntilAsync(() => daemon.Store.CountQueued() == 1);
        var rejected = await client.RunAsync(Utf8("""{"id":"q-2","prompt":"d","max_new_tokens":2}"""), Timeout);

        var error = Assert.Single(rejected);
        Assert.Contains("\"queue_full\"", error.Json, StringComparison.Ordinal);
        Assert.Contains("Queue:MaxJobs", error.Json, StringComparison.Ordinal);
        Assert.Equal("SUCCEEDED", (await queued)[^1].Status);
        Assert.Equal("SUCCEEDED", (await running)[^1].Status);
        Assert.Null(daemon.Store.Get("q-2"));
    }

    /// <summary>Labelled counters exist at 0 from the first scrape (newcomer check: failed and rejected appeared only with
    /// their first increment, so rate() and absent() on them misled).</summary>
    [Fact]
    public async Task Metrics_FreshNode_LabelledCountersExistAtZero()
    {
        await using var daemon = await DaemonHarness.StartAsync();
        using var metrics = new MetricsScraper(daemon.AdminUrl);

        var samples = await metrics.ScrapeAsync();

        foreach (var key in (string[])["edgenode_jobs_rejected_total{reason=\"queue_full\"}", "edgenode_jobs_rejected_total{reason=\"invalid_json\"}",
                     "edgenode_jobs_failed_total{reason=\"model_error\"}", "edgenode_store_errors_total{kind=\"commit\"}",
                     "edgenode_relay_errors_total{kind=\"unavailable\"}", "edgenode_jobs_routed_relay_total{reason=\"deadline\"}"])
        {
            Assert.True(samples.TryGetValue(key, out var value), key + " is missing");
            Assert.Equal(0, value);
        }
    }

    /// <summary>operations.md 1: after a run mixing valid, invalid, expired and queue_full jobs, every scrape reconciles.</summary>
    [Fact]
    public async Task Metrics_MixedRun_QueueDepthReconcilesAtEveryScrape()
    {
        await using var daemon = await DaemonHarness.StartWithTestHooksAsync(extra: new Dictionary<string, string?> { ["Queue:MaxJobs"] = "6", ["Testing:DecodeStepDelayMs"] = "2" });
        await using var client = await daemon.ConnectClientAsync();
        using var metrics = new MetricsScraper(daemon.AdminUrl);
        var scrapes = new List<Dictionary<string, double>>();

        var runs = new List<Task<IReadOnlyList<JobEvent>>>
        {
            client.RunAsync(Utf8("""{"id":"m-long","prompt":"a","max_new_tokens":600,"temperature":0}"""), Timeout),
        };
        for (var i = 0; i < 10; i++)
        {
            runs.Add(client.RunAsync(Utf8($$"""{"id":"m-{{i}}","prompt":"job {{i}}","max_new_tokens":3,"deadline_ms":{{(i % 3 == 0 ? 100 : 600_000)}}}"""), Timeout));
            runs.Add(client.RunAsync(Utf8("""{"prompt": 42}"""), Timeout));
            scrapes.Add(await metrics.ScrapeAsync());
        }

        var all = await Task.WhenAll(runs);
        scrapes.Add(await metrics.ScrapeAsync());

        foreach (var s in scrapes)
        {
            MetricsScraper.AssertDepthReconciles(s);
        }

        var last = scrapes[^1];
        var finals = all.Select(events => events[^1]).ToList();
        Assert.Equal(finals.Count(e => e.Status == "SUCCEEDED"), MetricsScraper.Get(last, "edgenode_jobs_succeeded_total"));
        Assert.Equal(finals.Count(e => e.Status == "TIMED_OUT"), MetricsScraper.Get(last, "edgenode_jobs_expired_total"));
        Assert.Equal(10, MetricsScraper.Get(last, "edgenode_jobs_rejected_total{reason=\"invalid_request\"}"));
        Assert.Equal(finals.Count(e => e.Json.Contains("\"queue_full\"", StringComparison.Ordinal)),
            MetricsScraper.Get(last, "edgenode_jobs_rejected_total{reason=\"queue_full\"}"));
        Assert.True(finals.Any(e => e.Status == "TIMED_OUT"), "the 100 ms deadlines behind the long job must expire");
        Assert.Equal(0, MetricsScraper.Get(last, "edgenode_queue_depth"));
        Assert.Equal(1, MetricsScraper.Get(last, "edgenode_broker_connected"));

        // Every job message (accepted or refused) was PUBACKed after its commit and timed once: 21 published.
        Assert.Equal(21, MetricsScraper.Get(last, "edgenode_ingest_accept_seconds_count"));
        Assert.Equal(MetricsScraper.Get(last, "edgenode_jobs_accepted_total") + MetricsScraper.Sum(last, "edgenode_jobs_rejected_total"),
            MetricsScraper.Get(last, "edgenode_ingest_accept_seconds_count"));
        Assert.Equal(21, MetricsScraper.Get(last, "edgenode_ingest_accept_seconds_bucket{le=\"+Inf\"}"));
        Assert.InRange(MetricsScraper.Get(last, "edgenode_ingest_accept_seconds_sum"), 1e-6, Timeout.TotalSeconds * 21);
    }

    /// <summary>DESIGN.md §3: the retained status says online with model and provider; the Will marks a killed node
    /// offline, and a clean stop does the same itself.</summary>
    [Fact]
    public async Task Status_RetainedOnline_WillMarksKilledNodeOffline_CleanStopToo()
    {
        await using var broker = await Mosquitto.StartAsync();
        using var state = new TempDirectory();
        string[] args = ["run", "--Node:Id=status-node", "--Node:StateDirectory=" + state.Path, "--Mqtt:Host=127.0.0.1",
            "--Mqtt:Port=" + broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--Admin:Url=", "--Inference:ModelPath=" + Models.TinyInt8];
        const string topic = "edgenode/nodes/status-node/status";

        await using (var node = Cli.EdgeNodeProcess.Start(args))
        {
            using var online = await ReadRetainedAsync(broker.Port, topic, d => d.RootElement.GetProperty("online").GetBoolean());
            Assert.Equal("CPU", online.RootElement.GetProperty("execution_provider").GetString());
            Assert.Equal(Path.GetFileName(Models.TinyInt8), online.RootElement.GetProperty("model").GetString());
            Assert.Equal(0, online.RootElement.GetProperty("queue_depth").GetInt32());
            node.Signal(9);
            await node.WaitForExitAsync(Timeout);
            using var killed = await ReadRetainedAsync(broker.Port, topic, d => !d.RootElement.GetProperty("online").GetBoolean());
            Assert.Equal("status-node", killed.RootElement.GetProperty("node").GetString());
        }

        await using (var node = Cli.EdgeNodeProcess.Start(args))
        {
            using var online = await ReadRetainedAsync(broker.Port, topic, d => d.RootElement.GetProperty("online").GetBoolean());
            node.Signal(15);
            Assert.Equal(0, await node.WaitForExitAsync(Timeout));
            using var stopped = await ReadRetainedAsync(broker.Port, topic, d => !d.RootElement.GetProperty("online").GetBoolean());
            Assert.False(stopped.RootElement.GetProperty("online").GetBoolean());
        }
    }

    /// <summary>durability.md 3: a corrupt database is moved aside with a timestamp, reported, and the node serves new jobs.</summary>
    [Fact]
    public async Task CorruptStore_MovedAsideReportedAndNodeServes()
    {
        using var state = new TempDirectory();
        await using (var first = await DaemonHarness.StartAsync(stateDirectory: state.Path))
        {
            await using var c = await first.ConnectClientAsync();
            await c.RunAsync(Utf8("""{"id":"before","prompt":"x","max_new_tokens":2}"""), Timeout);
        }

        var db = Path.Combine(state.Path, "jobs.db");
        var bytes = await File.ReadAllBytesAsync(db);
        Random.Shared.NextBytes(bytes.AsSpan(0, Math.Min(bytes.Length, 8192)));
        await File.WriteAllBytesAsync(db, bytes);

        await using var daemon = await DaemonHarness.StartAsync(stateDirectory: state.Path);
        await using var client = await daemon.ConnectClientAsync();
        var events = await client.RunAsync(Utf8("""{"id":"after","prompt":"y","max_new_tokens":2}"""), Timeout);

        Assert.Equal("SUCCEEDED", events[^1].Status);
        Assert.NotEmpty(Directory.GetDirectories(Path.Combine(state.Path, "quarantine")));
        using var http = new HttpClient { BaseAddress = daemon.AdminUrl };
        var ready = await http.GetStringAsync(new Uri("/readyz", UriKind.Relative));
        Assert.Contains("quarantine", ready, StringComparison.Ordinal);
        using var metrics = new MetricsScraper(daemon.AdminUrl);
        Assert.Equal(1, MetricsScraper.Get(await metrics.ScrapeAsync(), "edgenode_store_quarantined"));
    }

    /// <summary>
    /// durability.md 3, found while running (the newcomer's kind of fault): a data page of the finished jobs is
    /// overwritten, start-up does not read it, and resubmitting an old id meets it. That batch gets storage_error; the store is moved
    /// aside and reported like at start; new jobs run; the node stops promptly (it hung 60 s on LiteDB's lock before).
    /// </summary>
    [Fact]
    public async Task CorruptStoreFoundAtRuntime_MovedAsideReportedNodeServesAndStops()
    {
        using var state = new TempDirectory();
        await PrepareStoreWithCorruptFinishedJobsAsync(state.Path);

        // An hour between periodic status messages: only the quarantine itself can make the status name it in time.
        var daemon = await DaemonHarness.StartAsync(stateDirectory: state.Path, extra: new Dictionary<string, string?> { ["Node:StatusIntervalSeconds"] = "3600" });
        try
        {
            Assert.Null(daemon.Store.QuarantinedTo); // start-up did not read the page
            await using var client = await daemon.ConnectClientAsync();
            var resubmitted = await client.RunAsync(Utf8("""{"id":"crash-5","prompt":"x","max_new_tokens":2}"""), Timeout);
            Assert.Contains("storage_error", resubmitted[^1].Json, StringComparison.Ordinal);

            var events = await client.RunAsync(Utf8("""{"id":"after","prompt":"y","max_new_tokens":2}"""), Timeout);
            Assert.Equal("SUCCEEDED", events[^1].Status);
            var again = await client.RunAsync(Utf8("""{"id":"crash-6","prompt":"z","max_new_tokens":2}"""), Timeout);
            Assert.Equal("SUCCEEDED", again[^1].Status); // the old id is a new job in the empty store

            Assert.NotNull(daemon.Store.QuarantinedTo);
            Assert.True(File.Exists(Path.Combine(daemon.Store.QuarantinedTo, "jobs.db")));
            using var http = new HttpClient { BaseAddress = daemon.AdminUrl };
            var ready = await http.GetStringAsync(new Uri("/readyz", UriKind.Relative));
            Assert.Contains("quarantine", ready, StringComparison.Ordinal);
            using var metrics = new MetricsScraper(daemon.AdminUrl);
            var samples = await metrics.ScrapeAsync();
            Assert.Equal(1, MetricsScraper.Get(samples, "edgenode_store_quarantined"));
            Assert.Equal(1, MetricsScraper.Get(samples, "edgenode_store_errors_total{kind=\"quarantined\"}"));
            Assert.Equal(0, MetricsScraper.Get(samples, "edgenode_jobs_lost_total"));
            using var status = await ReadRetainedAsync(daemon.BrokerPort, "edgenode/nodes/test-node/status",
                d => d.RootElement.TryGetProperty("store_quarantined_to", out var q) && q.ValueKind == JsonValueKind.String);
            Assert.Equal(daemon.Store.QuarantinedTo, status.RootElement.GetProperty("store_quarantined_to").GetString());
        }
        finally
        {
            var stopping = Stopwatch.StartNew();
            await daemon.DisposeAsync();
            Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(20), $"stopping took {stopping.Elapsed}");
        }
    }

    /// <summary>
    /// Holders of old-store state in a running node: a job running and one queued when the store is quarantined are lost
    /// with it (no outcome), counted in edgenode_jobs_lost_total so that the depth reconciles, and the node goes on.
    /// </summary>
    [Fact]
    public async Task CorruptStoreFoundAtRuntime_WhileJobsRunAndWait_LostJobsReconcileDepth()
    {
        using var state = new TempDirectory();
        await PrepareStoreWithCorruptFinishedJobsAsync(state.Path);
        await using var daemon = await DaemonHarness.StartWithTestHooksAsync(
            new Dictionary<string, string?> { ["Testing:DecodeStepDelayMs"] = "5" }, stateDirectory: state.Path);
        await using var client = await daemon.ConnectClientAsync();
        var running = client.RunAsync(Utf8("""{"id":"lost-run","prompt":"a","max_new_tokens":400,"temperature":0}"""), Timeout);
        await WaitUntilAsync(() => daemon.Store.Get("lost-run")?.Status == "IN_PROGRESS");
        var queued = client.RunAsync(Utf8("""{"id":"lost-queued","prompt":"b","max_new_tokens":2}"""), Timeout);
        await WaitUntilAsync(() => daemon.Store.CountQueued() == 1);

        var resubmitted = await client.RunAsync(Utf8("""{"id":"crash-5","prompt":"x","max_new_tokens":2}"""), Timeout);
        Assert.Contains("storage_error", resubmitted[^1].Json, StringComparison.Ordinal);
        using var metrics = new MetricsScraper(daemon.AdminUrl);
        var scrapes = new List<Dictionary<string, double>> { await metrics.ScrapeAsync() };

        var after = await client.RunAsync(Utf8("""{"id":"after","prompt":"y","max_new_tokens":2}"""), Timeout);
        Assert.Equal("SUCCEEDED", after[^1].Status); // runs once the lost job's decode ended

        scrapes.Add(await metrics.ScrapeAsync());
        foreach (var s in scrapes)
        {
            MetricsScraper.AssertDepthReconciles(s);
        }

        Assert.Equal(2, MetricsScraper.Get(scrapes[^1], "edgenode_jobs_lost_total"));
        Assert.Equal(1, MetricsScraper.Get(scrapes[^1], "edgenode_store_quarantined"));
        Assert.Null(daemon.Store.Get("lost-run"));

        // Lost with the moved file, yet each still gets exactly one final event: FAILED storage_error (resubmit).
        foreach (var lost in (Task<IReadOnlyList<JobEvent>>[])[running, queued])
        {
            var events = await lost;
            Assert.Equal("FAILED", events[^1].Status);
            Assert.Contains("storage_error", events[^1].Json, StringComparison.Ordinal);
            Assert.Single(events, e => e.Type is "result" or "error");
        }
    }

    /// <summary>A state directory with 20 finished jobs (crash-0..19) whose data page holding crash-5 is overwritten.</summary>
    private static async Task PrepareStoreWithCorruptFinishedJobsAsync(string stateDirectory)
    {
        await using (var first = await DaemonHarness.StartAsync(stateDirectory: stateDirectory))
        {
            await using var c = await first.ConnectClientAsync();
            await Task.WhenAll(Enumerable.Range(0, 20).Select(i =>
                c.RunAsync(Utf8($$"""{"id":"crash-{{i}}","prompt":"x","max_new_tokens":2}"""), Timeout)));
        }

        Queue.CorruptFiles.OverwriteJobDataPage(Path.Combine(stateDirectory, "jobs.db"), "crash-5");
    }

    private static async Task<JsonDocument> ReadRetainedAsync(int port, string topic, Func<JsonDocument, bool> until)
    {
        var received = new TaskCompletionSource<JsonDocument>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var mqtt = new MqttClientFactory().CreateMqttClient();
        mqtt.ApplicationMessageReceivedAsync += e =>
        {
            var doc = JsonDocument.Parse(Encoding.UTF8.GetString(e.ApplicationMessage.Payload));
            if (until(doc))
            {
                received.TrySetResult(doc);
            }

            return Task.CompletedTask;
        };
        await mqtt.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).Build());
        await mqtt.SubscribeAsync(topic, MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce);
        return await received.Task.WaitAsync(Timeout);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        // Polls a store read (no event exists for "a job is IN_PROGRESS"); bounded by the test timeout.
        using var cts = new CancellationTokenSource(Timeout);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
        while (!condition())
        {
            await timer.WaitForNextTickAsync(cts.Token);
        }
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
