using System.Globalization;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// ../shared/cases/operations.md 3 (reconnect storm), bounded for CI: Mosquitto (persistent) is stopped and started
/// every 2 s for about 20 s while jobs run. Reconnects stay bounded by the jittered backoff, no job gets two
/// different final events or completes twice, and the node serves normally once the broker stays up.
/// </summary>
[Collection("Daemon")]
public sealed class ReconnectStormTests
{
    private const int Cycles = 5;
    private static readonly TimeSpan Timeout = NodeProcess.Timeout;
    private static readonly TimeSpan Half = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task BrokerFlapsEvery2Seconds_ReconnectsBounded_NoDuplicateOutcomes_ServesAfter()
    {
        using var state = new TempDirectory();
        await using var broker = new PersistentBroker();
        await broker.StartAsync();
        var adminPort = Ports.FreeLoopbackPort();
        await using var node = new NodeProcess(state.Path, broker.Port, "storm", "--Admin:Url=http://127.0.0.1:" + adminPort.ToString(CultureInfo.InvariantCulture));
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "storm");

        var ids = Enumerable.Range(0, 40).Select(i => "storm-" + i.ToString("D2", CultureInfo.InvariantCulture)).ToList();
        await Task.WhenAll(ids.Select(id => device.PublishJobAsync(id, $$"""{"id":"{{id}}","prompt":"Flapping {{id}}","max_new_tokens":50}""")));

        // The stimulus: a fixed schedule of broker stops and starts (the delays drive the storm; nothing waits on them for a result).
        var linesBeforeLastStart = 0;
        for (var cycle = 0; cycle < Cycles; cycle++)
        {
            await Task.Delay(Half);
            await broker.StopAsync();
            await Task.Delay(Half);
            linesBeforeLastStart = node.Current.Lines.Count;
            await broker.StartAsync();
        }

        await device.WaitForFinalsAsync(ids, Timeout);
        // Mosquitto does not restore a shared subscription from its persistence file: a pool job published after its
        // restart and before the node resubscribed is answered "no matching subscribers" (reason 16) and dropped. So the
        // device waits for the node's resubscription after the last restart.
        await node.Current.WaitForLineAsync(_ => node.Current.Lines.Skip(linesBeforeLastStart).Any(l => l.Contains("Subscribed to edgenode/nodes/storm/jobs", StringComparison.Ordinal)), Timeout);
        await device.WaitUntilAsync(d => d.IsConnected, "device reconnected", Timeout);
        await device.PublishJobAsync("after-storm", """{"id":"after-storm","prompt":"Calm again","max_new_tokens":4}""");
        await device.WaitForFinalsAsync(["after-storm"], Timeout);
        Assert.Contains("\"status\":\"SUCCEEDED\"", device.FinalText("after-storm"), StringComparison.Ordinal);

        using var http = new HttpClient();
        var metrics = await http.GetStringAsync(new Uri($"http://127.0.0.1:{adminPort}/metrics"));
        var reconnects = double.Parse(metrics.Split('\n').Single(l => l.StartsWith("edgenode_broker_reconnects_total ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);
        await node.StopAsync();

        // Bounded: one successful reconnect per broker start (a ping-detected drop may add one), and a handful of refused
        // attempts per 2 s outage (250 ms doubling with jitter). A loop without backoff makes thousands in 20 s.
        var attempts = node.AllLines.Count(l => l.Contains("Cannot connect to MQTT broker", StringComparison.Ordinal) || l.Contains("Connected to MQTT broker", StringComparison.Ordinal));
        Assert.InRange(reconnects, 1, 2 * Cycles);
        Assert.InRange(attempts, Cycles, 10 * Cycles);

        // No duplicate final events with different bytes, no job completed twice, no amplification of repeats.
        device.AssertOneFinalEach(ids);
        var completions = node.CountFinishedLines(JobStatuses.Succeeded);
        Assert.All(ids, id => Assert.Equal(1, completions.GetValueOrDefault(id)));
        Assert.InRange(device.Finals.Values.Sum(copies => copies.Count), ids.Count + 1, 2 * (ids.Count + 1));
    }
}
