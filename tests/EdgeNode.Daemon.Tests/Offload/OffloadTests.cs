using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeNode.CloudRelay.Hosting;
using EdgeNode.Daemon.Client;
using EdgeNode.Daemon.Tests.EndToEnd;
using EdgeNode.Daemon.Tests.Operations;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeNode.Daemon.Tests.Offload;

/// <summary>
/// Queue-aware offload end to end (issue 5, DESIGN.md §5): a real daemon (embedded MQTT broker, LiteDB, ONNX Runtime
/// on the tiny model) and a real relay (Kestrel on 127.0.0.1) in this process, jobs over MQTT.
/// </summary>
[Collection("Daemon")]
public sealed class OffloadTests
{
    private const string Device = "gw-1";
    private static readonly byte[] Key = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Burst_LocalQueueFull_SomeJobsRunOnRelayAndAllComplete()
    {
        await using var relay = await TestRelay.StartAsync();
        await using var node = await DaemonHarness.StartWithTestHooksAsync(extra: NodeConfig(relay.Port, maxJobs: 2));
        await using var client = await node.ConnectClientAsync();

        var jobs = await RunBurstAsync(client, "burst", 10);

        Assert.All(jobs, j => Assert.Equal(JobStatuses.Succeeded, j.Final.Status));
        Assert.Contains(jobs, j => j.Route == "relay" && j.ExecutedOn == "relay");
        Assert.Contains(jobs, j => j.ExecutedOn == "local");
        Assert.All(jobs.Where(j => j.Route == "relay"), j => Assert.Equal("relay", j.ExecutedOn)); // the relay was healthy
        using var scraper = new MetricsScraper(node.AdminUrl);
        var m = await scraper.ScrapeAsync();
        Assert.Equal(jobs.Count(j => j.Route == "relay"), MetricsScraper.Sum(m, "edgenode_jobs_routed_relay_total"));
        AssertReconciles(m);
        Assert.Equal(0, MetricsScraper.Get(m, "edgenode_jobs_offloaded"));
        Assert.Equal(0, MetricsScraper.Get(m, "edgenode_relay_circuit_state")); // closed
        Assert.True(MetricsScraper.Get(m, "edgenode_relay_round_trip_seconds") > 0); // measured from the relay's answers
        Assert.True(MetricsScraper.Get(m, "edgenode_service_rate") > 0); // μ measured from local service times
        Assert.True(MetricsScraper.Get(m, "edgenode_arrival_rate") > 0); // λ counts every accepted job
        foreach (var job in jobs)
        {
            var record = node.Store.Get(job.Id)!;
            Assert.Equal(JobStatuses.Succeeded, record.Status);
            Assert.Equal(job.Final.Json, Encoding.UTF8.GetString(record.FinalEvent!)); // the relay's bytes, as stored
        }
    }

    [Fact]
    public async Task RelayStopped_JobsFallBackLocalNoneLost_CircuitOpensThenClosesWhenRelayReturns()
    {
        var port = Ports.FreeLoopbackPort();
        var relay = await TestRelay.StartAsync(port);
        await relay.DisposeAsync(); // the relay goes away before the burst: connections are refused
        await using var node = await DaemonHarness.StartWithTestHooksAsync(extra: NodeConfig(port, maxJobs: 1));
        await using var client = await node.ConnectClientAsync();
        using var scraper = new MetricsScraper(node.AdminUrl);

        var down = await RunBurstAsync(client, "down", 8);

        // Nothing lost: every accepted job succeeded locally; the only refusals are queue_full.
        Assert.Contains(down, j => j.Route == "relay");
        Assert.All(down.Where(j => j.Route is not null), j =>
        {
            Assert.Equal(JobStatuses.Succeeded, j.Final.Status);
            Assert.Equal("local", j.ExecutedOn);
        });
        Assert.All(down.Where(j => j.Route is null), j => Assert.Contains(JobErrorCodes.QueueFull, j.Final.Json, StringComparison.Ordinal));
        var m = await scraper.ScrapeAsync();
        Assert.True(MetricsScraper.Sum(m, "edgenode_relay_errors_total") >= 2);
        Assert.Equal(down.Count(j => j.Route == "relay"), MetricsScraper.Get(m, "edgenode_jobs_relay_returned_total"));
        Assert.Equal(2, MetricsScraper.Get(m, "edgenode_relay_circuit_state")); // open
        AssertReconciles(m);

        await using var back = await TestRelay.StartAsync(port);
        var onRelay = false;
        for (var round = 0; round < 60 && !onRelay; round++)
        {
            var jobs = await RunBurstAsync(client, "back" + round.ToString(CultureInfo.InvariantCulture), 3);
            Assert.All(jobs.Where(j => j.Route is not null), j => Assert.Equal(JobStatuses.Succeeded, j.Final.Status));
            onRelay = jobs.Any(j => j.ExecutedOn == "relay");
        }

        Assert.True(onRelay, "no job ran on the relay after it came back");
        m = await scraper.ScrapeAsync();
        Assert.Equal(0, MetricsScraper.Get(m, "edgenode_relay_circuit_state")); // closed by the probe
        AssertReconciles(m);
    }

    [Fact]
    public async Task Relay429_RetryAfterHonoured_OneRequestThenJobsRunLocally()
    {
        // A relay that answers every job with 429 and Retry-After: 3600 (its own queue full).
        var requests = 0;
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var fake = builder.Build();
        fake.MapPost("/v1/jobs", (HttpContext c) =>
        {
            Interlocked.Increment(ref requests);
            c.Response.Headers.RetryAfter = "3600";
            return Results.StatusCode(429);
        });
        await fake.StartAsync();
        var port = new Uri(fake.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        await using var node = await DaemonHarness.StartWithTestHooksAsync(extra: NodeConfig(port, maxJobs: 1, maxConcurrent: 1));
        await using var client = await node.ConnectClientAsync();
        using var scraper = new MetricsScraper(node.AdminUrl);

        var first = await RunBurstAsync(client, "t1", 6);
        var second = await RunBurstAsync(client, "t2", 6);

        Assert.Contains(first, j => j.Route == "relay");
        Assert.All(first.Concat(second).Where(j => j.Route is not null), j =>
        {
            Assert.Equal(JobStatuses.Succeeded, j.Final.Status);
            Assert.Equal("local", j.ExecutedOn); // a throttled job comes back and runs here
        });
        Assert.All(second, j => Assert.NotEqual("relay", j.Route)); // the pause keeps new jobs local
        Assert.Equal(1, Volatile.Read(ref requests)); // nothing more was sent during the Retry-After pause
        var m = await scraper.ScrapeAsync();
        Assert.Equal(1, MetricsScraper.Get(m, "edgenode_relay_errors_total{kind=\"throttled\"}"));
        Assert.Equal(0, MetricsScraper.Get(m, "edgenode_relay_circuit_state")); // throttling is not a failure
        AssertReconciles(m);
    }

    /// <summary>
    /// The node's offload settings. Each local token takes at least <paramref name="decodeStepDelayMs"/> (test hook,
    /// only read when the hooks are on), so a burst overflows the short local queue however fast the machine is.
    /// </summary>
    internal static Dictionary<string, string?> NodeConfig(int relayPort, int maxJobs, int maxConcurrent = 4, int decodeStepDelayMs = 25) => new()
    {
        ["Testing:DecodeStepDelayMs"] = decodeStepDelayMs.ToString(CultureInfo.InvariantCulture),
        ["Offload:RelayUrl"] = $"http://127.0.0.1:{relayPort}",
        ["Offload:DeviceId"] = Device,
        ["Offload:DeviceKey"] = Convert.ToBase64String(Key),
        ["Offload:BreakDuration"] = "00:00:01",
        ["Offload:MinimumThroughput"] = "2",
        ["Offload:RequestTimeout"] = "00:00:30",
        ["Offload:MaxConcurrent"] = maxConcurrent.ToString(CultureInfo.InvariantCulture),
        ["Queue:MaxJobs"] = maxJobs.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>queue depth + in flight + offloaded = accepted + recovered − finals (NodeMetrics).</summary>
    private static void AssertReconciles(Dictionary<string, double> m) => MetricsScraper.AssertDepthReconciles(m);

    internal static async Task<List<JobOutcome>> RunBurstAsync(JobClient client, string prefix, int count)
    {
        var runs = Enumerable.Range(0, count).Select(i =>
        {
            var id = $"{prefix}-{i}";
            var payload = Encoding.UTF8.GetBytes($$"""{"id":"{{id}}","prompt":"Hello, my name is","max_new_tokens":8,"seed":{{i}}}""");
            return client.RunAsync(payload, JobTimeout);
        }).ToList();
        var results = await Task.WhenAll(runs);
        return results.Select(JobOutcome.From).ToList();
    }

    /// <summary>One job's events: its route (null when refused), final event and where it ran.</summary>
    internal sealed record JobOutcome(string Id, string? Route, JobEvent Final, string? ExecutedOn)
    {
        public static JobOutcome From(IReadOnlyList<JobEvent> events)
        {
            var final = events[^1];
            Assert.True(final.IsFinal);
            string? route = null;
            foreach (var accepted in events.Where(e => e.Type == "accepted"))
            {
                using var doc = JsonDocument.Parse(accepted.Json);
                route = doc.RootElement.GetProperty("route").GetString();
            }

            using var f = JsonDocument.Parse(final.Json);
            var executedOn = f.RootElement.TryGetProperty("executed_on", out var e) ? e.GetString() : null;
            return new JobOutcome(final.Id, route, final, executedOn);
        }
    }
}

/// <summary>A real relay (Kestrel on 127.0.0.1) in the test process with device gw-1 and the tiny model.</summary>
internal sealed class TestRelay : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly TempDirectory _state;

    private TestRelay(WebApplication app, TempDirectory state, Uri address)
    {
        _app = app;
        _state = state;
        Port = address.Port;
    }

    public int Port { get; }

    public static async Task<TestRelay> StartAsync(int port = 0, Dictionary<string, string?>? extra = null)
    {
        var state = new TempDirectory();
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Url"] = $"http://127.0.0.1:{port}",
            ["Relay:StateDirectory"] = state.Path,
            ["Relay:Embedded:ModelPath"] = Models.TinyInt8,
            ["Relay:Embedded:IntraOpThreads"] = "1",
            ["Relay:Devices:gw-1:Key"] = Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray()),
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (k, v) in extra ?? [])
        {
            settings[k] = v;
        }

        var app = RelayApp.Build([], settings);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new TestRelay(app, state, new Uri(address));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _state.Dispose();
    }
}
