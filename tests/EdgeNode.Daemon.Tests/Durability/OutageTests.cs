using System.Globalization;
using System.Text.RegularExpressions;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// Broker outages against a Mosquitto with persistence (its sessions and queued messages survive its restart):
/// ../shared/cases/durability.md 1 (restart while the broker is down) and issue 4 acceptance line 3 (outcomes
/// produced during an outage are delivered after the reconnect).
/// </summary>
[Collection("Daemon")]
public sealed partial class OutageTests
{
    private static readonly TimeSpan Timeout = NodeProcess.Timeout;

    [Fact]
    public async Task NodeKilledWhileBrokerDown_BothRestart_All20JobsEndOnce()
    {
        using var state = new TempDirectory();
        await using var broker = new PersistentBroker();
        await broker.StartAsync();
        await using var node = new NodeProcess(state.Path, broker.Port, "outage1") { DecodeStepDelayMs = 5 };
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "outage1");
        var ids = await Publish20Async(device, "o1");

        await broker.StopAsync();
        await WaitForOutcomeProducedWhileDownAsync(node, device, ids);
        await node.Current.KillAsync(Timeout);

        await broker.StartAsync();
        await node.StartReadyAsync();
        await device.WaitForFinalsAsync(ids, Timeout);
        await node.StopAsync();
        AssertEachCompletedOnce(node, device, ids);
    }

    [Fact]
    public async Task BrokerStoppedAndRestarted_OutcomesProducedMeanwhile_DeliveredAfterReconnect()
    {
        using var state = new TempDirectory();
        await using var broker = new PersistentBroker();
        await broker.StartAsync();
        await using var node = new NodeProcess(state.Path, broker.Port, "outage2") { DecodeStepDelayMs = 5 };
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "outage2");
        var ids = await Publish20Async(device, "o2");

        await broker.StopAsync();
        var producedWhileDown = await WaitForOutcomeProducedWhileDownAsync(node, device, ids);
        var linesBeforeRestart = node.Current.Lines.Count;
        await broker.StartAsync();

        await device.WaitForFinalsAsync(ids, Timeout);
        Assert.Contains(node.Current.Lines.Skip(linesBeforeRestart), l => l.Contains("Connected to MQTT broker", StringComparison.Ordinal));
        Assert.False(node.Current.Exited.IsCompleted, "the node must ride out the outage");
        Assert.Contains("\"status\":\"SUCCEEDED\"", device.FinalText(producedWhileDown), StringComparison.Ordinal);
        await node.StopAsync();
        AssertEachCompletedOnce(node, device, ids);
    }

    private static async Task<List<string>> Publish20Async(DeviceClient device, string prefix)
    {
        var ids = Enumerable.Range(0, 20).Select(i => prefix + "-" + i.ToString("D2", CultureInfo.InvariantCulture)).ToList();
        foreach (var id in ids)
        {
            await device.PublishJobAsync(id, $$"""{"id":"{{id}}","prompt":"Outage {{id}}","max_new_tokens":40}""");
        }

        await device.WaitUntilAsync(d => ids.All(d.Accepted.Contains), "20 accepted events", Timeout);
        return ids;
    }

    /// <summary>Waits until the executor finished a job whose outcome the device has not received (so it was produced while the broker is down).</summary>
    private static async Task<string> WaitForOutcomeProducedWhileDownAsync(NodeProcess node, DeviceClient device, List<string> ids)
    {
        var deliveredBefore = device.Finals.Keys.ToHashSet(StringComparer.Ordinal);
        Assert.True(deliveredBefore.Count < ids.Count - 2, "jobs must still be running when the broker stops");
        var line = await node.Current.WaitForLineAsync(l => Succeeded().Match(l) is { Success: true } m && !deliveredBefore.Contains(m.Groups["id"].Value), Timeout);
        return Succeeded().Match(line).Groups["id"].Value;
    }

    private static void AssertEachCompletedOnce(NodeProcess node, DeviceClient device, List<string> ids)
    {
        var finals = device.AssertOneFinalEach(ids);
        var completions = node.CountFinishedLines(JobStatuses.Succeeded);
        using var store = node.OpenStore();
        foreach (var id in ids)
        {
            Assert.Equal(1, completions.GetValueOrDefault(id));
            Assert.Equal(finals[id], store.Get(id)!.FinalEvent);
        }
    }

    [GeneratedRegex(@"Executor\[302\] Job (?<id>\S+) SUCCEEDED")]
    private static partial Regex Succeeded();
}
