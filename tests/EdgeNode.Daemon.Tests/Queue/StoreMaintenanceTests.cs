using EdgeNode.Daemon.Queue;
using EdgeNode.Daemon.Tests.EndToEnd;
using static EdgeNode.Daemon.Tests.Queue.Items;

namespace EdgeNode.Daemon.Tests.Queue;

/// <summary>
/// The background checkpoint of <see cref="StoreMaintenance"/> in a running node: LiteDB's auto-checkpoint is off, so
/// without it the log would only shrink at the 32 MiB hard bound.
/// </summary>
[Collection("Daemon")]
public sealed class StoreMaintenanceTests
{
    [Fact]
    public async Task CheckpointLoop_LogOverCheckpointSize_CheckpointedInTheBackground()
    {
        await using var daemon = await DaemonHarness.StartAsync(extra: new Dictionary<string, string?> { ["Execution:Paused"] = "true" });
        var store = daemon.Store;

        // Written straight to the node's store: ~1,000 log pages, far under the hard bound, far over the checkpoint size.
        var peak = 0L;
        for (var batch = 0; batch < 40; batch++)
        {
            store.CommitBatch([.. Enumerable.Range(0, 20).Select(i => Accept($"m{batch}-{i}"))]);
            peak = Math.Max(peak, store.LogBytes);
        }

        Assert.True(peak > JobStore.CheckpointLogBytes, $"the log peaked at {peak} bytes");
        Assert.True(store.LogBytes < JobStore.MaxLogBytes);

        // The loop checks every 100 ms; a generous bound for a loaded machine.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (store.LogBytes > JobStore.CheckpointLogBytes && DateTime.UtcNow < deadline)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(50));
        }

        Assert.True(store.LogBytes <= JobStore.CheckpointLogBytes, $"the log is still {store.LogBytes} bytes");
        Assert.Equal(800, store.CountQueued());
    }
}
