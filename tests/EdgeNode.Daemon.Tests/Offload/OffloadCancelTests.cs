using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeNode.Daemon.Client;
using EdgeNode.Daemon.Tests.EndToEnd;
using EdgeNode.Daemon.Tests.Operations;
using EdgeNode.Shared.Jobs;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeNode.Daemon.Tests.Offload;

/// <summary>
/// Cancelling a job the cloud relay holds (DESIGN.md §3 cancel topic, §5): the relay API (§6) has no cancel call,
/// so the node ends the job CANCELED at once, aborts its relay request and never publishes a second final event.
/// Real daemon (embedded MQTTnet broker, LiteDB), real HTTP: a relay on Kestrel (127.0.0.1) that holds every job
/// until its request is aborted, so that a job is OFFLOADED when the cancel arrives on any machine.
/// </summary>
[Collection("Daemon")]
public sealed class OffloadCancelTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Cancel_OffloadedJob_CanceledOnceAndRelayRequestAbandoned()
    {
        await using var relay = await HoldingRelay.StartAsync();
        var config = OffloadTests.NodeConfig(relay.Port, maxJobs: 1, maxConcurrent: 1);
        config["Execution:Paused"] = "true"; // the first job keeps the one local place, so the next ones go to the relay
        await using var node = await DaemonHarness.StartWithTestHooksAsync(extra: config);
        await using var client = await node.ConnectClientAsync();

        await using var local = await SubmitAsync(client, "local-1");
        Assert.Equal("local", local.Route);
        await using var held = await SubmitAsync(client, "held");
        Assert.Equal("relay", held.Route);
        Assert.Equal("held", await relay.NextRequestAsync());
        await using var waiting = await SubmitAsync(client, "waiting"); // OFFLOADED, waiting for the one relay slot
        Assert.Equal("relay", waiting.Route);

        // A job not yet sent: canceled at once, and never sent afterwards.
        await client.CancelAsync("waiting");
        var waitingFinal = await waiting.FinalAsync();
        AssertCanceled(waitingFinal);

        // A job the relay is working on: canceled at once, and its relay request is aborted.
        await client.CancelAsync("held");
        var heldFinal = await held.FinalAsync();
        AssertCanceled(heldFinal);
        Assert.Equal("held", await relay.NextAbortAsync());

        // The slot is free again: the next offloaded job is the first request the relay sees since "held".
        await using var next = await SubmitAsync(client, "next");
        Assert.Equal("relay", next.Route);
        Assert.Equal("next", await relay.NextRequestAsync());
        await client.CancelAsync("next");
        AssertCanceled(await next.FinalAsync());
        Assert.Equal("next", await relay.NextAbortAsync());

        // One final outcome each, stored as published; the counters add up.
        foreach (var (id, final) in new[] { ("waiting", waitingFinal), ("held", heldFinal) })
        {
            var record = node.Store.Get(id)!;
            Assert.Equal(JobStatuses.Canceled, record.Status);
            Assert.Equal(final.Json, Encoding.UTF8.GetString(record.FinalEvent!));
        }

        Assert.Equal(JobStatuses.Queued, node.Store.Get("local-1")!.Status);
        using var scraper = new MetricsScraper(node.AdminUrl);
        var m = await scraper.ScrapeAsync();
        Assert.Equal(3, MetricsScraper.Get(m, "edgenode_jobs_cancelled_total"));
        Assert.Equal(0, MetricsScraper.Get(m, "edgenode_jobs_offloaded"));
        Assert.Equal(0, MetricsScraper.Sum(m, "edgenode_relay_errors_total")); // an abandoned request is not a relay failure
        Assert.Equal(0, MetricsScraper.Get(m, "edgenode_relay_circuit_state"));
        Assert.Equal(1, MetricsScraper.Get(m, "edgenode_queue_depth"));
        Assert.Equal(4, MetricsScraper.Get(m, "edgenode_jobs_accepted_total"));
    }

    [Fact]
    public async Task Cancel_JobAlreadyFinishedOnRelay_AlreadyFinalAndOutcomeKept()
    {
        await using var relay = await TestRelay.StartAsync();
        var config = OffloadTests.NodeConfig(relay.Port, maxJobs: 1);
        config["Execution:Paused"] = "true";
        await using var node = await DaemonHarness.StartWithTestHooksAsync(extra: config);
        await using var client = await node.ConnectClientAsync();

        await using var local = await SubmitAsync(client, "local-1");
        await using var remote = await SubmitAsync(client, "remote");
        Assert.Equal("relay", remote.Route);
        var final = await remote.FinalAsync();
        Assert.Equal(JobStatuses.Succeeded, final.Status);

        // The cancel finds the outcome the relay gave and leaves it (CancelOutcome.AlreadyFinal).
        await client.CancelAsync("remote");
        await using var after = await SubmitAsync(client, "remote"); // a resubmission is answered with the stored outcome
        var replay = await after.FinalAsync();
        Assert.Equal(final.Json, replay.Json);
        Assert.Equal(JobStatuses.Succeeded, node.Store.Get("remote")!.Status);
        using var scraper = new MetricsScraper(node.AdminUrl);
        Assert.Equal(0, MetricsScraper.Get(await scraper.ScrapeAsync(), "edgenode_jobs_cancelled_total"));
    }

    private static void AssertCanceled(JobEvent final)
    {
        Assert.Equal("error", final.Type);
        Assert.Equal(JobStatuses.Canceled, final.Status);
        using var doc = JsonDocument.Parse(final.Json);
        Assert.Equal(JobErrorCodes.Canceled, doc.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    private static async Task<Submission> SubmitAsync(JobClient client, string id)
    {
        var payload = Encoding.UTF8.GetBytes($$"""{"id":"{{id}}","prompt":"Hello, my name is","max_new_tokens":8,"seed":1}""");
        var events = client.SubmitAsync(payload, Timeout).GetAsyncEnumerator();
        Assert.True(await events.MoveNextAsync());
        var first = events.Current;
        string? route = null;
        if (first.Type == "accepted")
        {
            using var doc = JsonDocument.Parse(first.Json);
            route = doc.RootElement.GetProperty("route").GetString();
        }

        return new Submission(events, first, route);
    }

    /// <summary>One submitted job's event stream: its first event (accepted, or the final one of a known id) and the rest.</summary>
    private sealed class Submission(IAsyncEnumerator<JobEvent> events, JobEvent first, string? route) : IAsyncDisposable
    {
        public string? Route { get; } = route;

        public async Task<JobEvent> FinalAsync()
        {
            if (first.IsFinal)
            {
                return first;
            }

            Assert.True(await events.MoveNextAsync(), "the event stream ended without a final event");
            var final = events.Current;
            Assert.True(final.IsFinal, "expected the final event, got " + final.Type);
            return final;
        }

        public ValueTask DisposeAsync() => events.DisposeAsync();
    }

    /// <summary>
    /// A relay on Kestrel (127.0.0.1, ephemeral port) that accepts every <c>POST /v1/jobs</c> and answers none: each
    /// request waits until the client aborts it. Reports the job id of each request and of each abort, in order.
    /// </summary>
    private sealed class HoldingRelay : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly BlockingCollection<string> _requests = [];
        private readonly BlockingCollection<string> _aborts = [];

        private HoldingRelay(WebApplication app) => _app = app;

        public int Port { get; private set; }

        public static async Task<HoldingRelay> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            var relay = new HoldingRelay(app);
            app.MapPost("/v1/jobs", async (HttpContext c) =>
            {
                using var doc = await JsonDocument.ParseAsync(c.Request.Body);
                var id = doc.RootElement.GetProperty("id").GetString()!;
                relay._requests.Add(id);
                try
                {
                    await Task.Delay(System.Threading.Timeout.InfiniteTimeSpan, c.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    relay._aborts.Add(id);
                }
            });
            await app.StartAsync();
            relay.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
            return relay;
        }

        public Task<string> NextRequestAsync() => Task.Run(() => Take(_requests, "request"));

        public Task<string> NextAbortAsync() => Task.Run(() => Take(_aborts, "aborted request"));

        private static string Take(BlockingCollection<string> from, string what) =>
            from.TryTake(out var id, Timeout) ? id : throw new TimeoutException($"no {what} within {Timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s");

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
            _requests.Dispose();
            _aborts.Dispose();
        }
    }
}
