using System.Text;
using System.Text.Json;
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
/// An offloaded job the relay does not run and whose deadline has passed (DESIGN.md §4 rule 5, §5) ends TIMED_OUT
/// at once in the offload worker, instead of going back to the local queue only for the executor to fail it.
/// Real daemon and a relay on Kestrel (127.0.0.1) that answers 500 a second after each request.
/// </summary>
[Collection("Daemon")]
public sealed class OffloadDeadlineTests
{
    [Fact]
    public async Task RelayFails_DeadlinePassed_TimedOutWithoutTheLocalQueue()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var relay = builder.Build();
        relay.MapPost("/v1/jobs", async (HttpContext c) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(1), c.RequestAborted); // longer than the job's 200 ms deadline
            return Results.StatusCode(500);
        });
        await relay.StartAsync();
        var port = new Uri(relay.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        var config = OffloadTests.NodeConfig(port, maxJobs: 1);
        config["Execution:Paused"] = "true"; // nothing runs locally: only the worker can end the job
        await using var node = await DaemonHarness.StartWithTestHooksAsync(extra: config);
        await using var client = await node.ConnectClientAsync();

        await using var local = client.SubmitAsync("""{"id":"d-local","prompt":"a","max_new_tokens":2}"""u8.ToArray(), TimeSpan.FromSeconds(60)).GetAsyncEnumerator();
        Assert.True(await local.MoveNextAsync()); // accepted: it holds the one local place (the executor is paused)
        var events = await client.RunAsync("""{"id":"d-late","prompt":"b","max_new_tokens":2,"deadline_ms":200}"""u8.ToArray(), TimeSpan.FromSeconds(60));

        Assert.Equal(["accepted", "error"], events.Select(e => e.Type));
        using (var accepted = JsonDocument.Parse(events[0].Json))
        {
            Assert.Equal("relay", accepted.RootElement.GetProperty("route").GetString());
        }

        using var error = JsonDocument.Parse(events[1].Json);
        Assert.Equal(JobStatuses.TimedOut, error.RootElement.GetProperty("status").GetString());
        Assert.Equal(JobErrorCodes.DeadlineExceeded, error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(events[1].Json, Encoding.UTF8.GetString(node.Store.Get("d-late")!.FinalEvent!));
        using var scraper = new MetricsScraper(node.AdminUrl);
        var m = await scraper.ScrapeAsync();
        Assert.Equal(1, MetricsScraper.Get(m, "edgenode_jobs_expired_total"));
        Assert.Equal(0, MetricsScraper.Get(m, "edgenode_jobs_relay_returned_total"));
        Assert.Equal(1, MetricsScraper.Get(m, "edgenode_relay_errors_total{kind=\"failed\"}"));
        Assert.Equal(1, MetricsScraper.Get(m, "edgenode_queue_depth")); // only d-local
    }
}
