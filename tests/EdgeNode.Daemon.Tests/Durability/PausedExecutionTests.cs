using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary><c>Execution:Paused</c>: jobs are accepted, committed and acknowledged, none runs.</summary>
[Collection("Daemon")]
public sealed class PausedExecutionTests
{
    [Fact]
    public async Task ExecutionPaused_JobAcceptedAndCommitted_NeverStarted()
    {
        using var state = new TempDirectory();
        await using var broker = await Mosquitto.StartAsync();
        await using var node = new NodeProcess(state.Path, broker.Port, "paused", "--Execution:Paused=true");
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "paused");

        await device.PublishJobAsync("held-1", """{"id":"held-1","prompt":"Hold it","max_new_tokens":4}""");
        await device.WaitUntilAsync(d => d.Accepted.Contains("held-1"), "accepted event", NodeProcess.Timeout);
        Assert.Contains(node.Current.Lines, l => l.Contains("Execution paused", StringComparison.Ordinal));
        await node.StopAsync();

        Assert.DoesNotContain(node.AllLines, l => l.Contains("Job held-1 started", StringComparison.Ordinal));
        using var store = node.OpenStore();
        var job = store.Get("held-1")!;
        Assert.Equal(JobStatuses.Queued, job.Status);
        Assert.Equal(0, job.Attempts);
    }

    [Fact]
    public async Task ExecutionPaused_BurstFromOneDevice_AcceptedEventsArriveOncePerJobInPublishOrder()
    {
        // The outbox keeps many QoS 1 PUBLISHes in flight at once and takes their PUBACKs in order; the events of a
        // burst must still reach the device in outbox order (= arrival order of the jobs), each once.
        using var state = new TempDirectory();
        await using var broker = await Mosquitto.StartAsync();
        await using var node = new NodeProcess(state.Path, broker.Port, "order", "--Execution:Paused=true");
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "order");
        var ids = Enumerable.Range(0, 400).Select(i => "burst-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToList();

        await device.PublishJobsAsync(ids.Select(id => (id, $$"""{"id":"{{id}}","prompt":"Hold it","max_new_tokens":4}""")));
        await device.WaitUntilAsync(d => d.Accepted.Count == ids.Count, "an accepted event for each of the burst's jobs", NodeProcess.Timeout);
        await node.StopAsync();

        Assert.Equal(ids, device.AcceptedInArrivalOrder);
        using var store = node.OpenStore();
        Assert.Equal(0, store.OutboxCount); // every PUBACKed entry was marked delivered
    }
}
