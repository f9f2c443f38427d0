using System.Globalization;
using System.Text;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// Issue 4 acceptance line 1 and ../shared/cases/durability.md 5 and 7: the daemon as a subprocess killed with
/// SIGKILL against an external Mosquitto (which outlives it), then restarted on the same state directory.
/// </summary>
[Collection("Daemon")]
public sealed class CrashTests
{
    private const int SigStop = 19;
    private const int SigCont = 18;
    private static readonly TimeSpan Timeout = NodeProcess.Timeout;

    /// <summary>
    /// 200 jobs sampled without a seed (a second run would give other text, so byte-identical repeats prove that
    /// no job completed twice). While results flow the broker is frozen (SIGSTOP: the link stays open, PUBACKs stop),
    /// so outcomes pile up unpublished in the outbox; when the long job starts the daemon is killed. The store at
    /// that moment is checked for the premise (some queued, one running, outcomes unpublished), then the broker
    /// resumes and the daemon restarts.
    /// </summary>
    [Fact]
    public async Task Sigkill_With200JobsInFlight_EveryJobEndsOnce_RepeatsByteIdentical()
    {
        const int count = 200;
        const int longJob = 100;
        using var state = new TempDirectory();
        await using var broker = await Mosquitto.StartAsync();
        await using var node = new NodeProcess(state.Path, broker.Port, "crash");
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "crash");

        var ids = Enumerable.Range(0, count).Select(i => "crash-" + i.ToString("D3", CultureInfo.InvariantCulture)).ToList();
        await Task.WhenAll(ids.Select((id, i) => device.PublishJobAsync(id,
            $$"""{"id":"{{id}}","prompt":"Sensor {{i}} reports","max_new_tokens":{{(i == longJob ? 150 : 4)}}}""")));

        // Some results are out; then freeze the broker so the next outcomes stay in the outbox.
        await device.WaitUntilAsync(d => d.Finals.Count >= 20, "20 results", Timeout);
        broker.Process.Signal(SigStop);
        try
        {
            await node.Current.WaitForLineAsync(l => l.Contains($"Job {ids[longJob]} started", StringComparison.Ordinal), Timeout);
            await node.Current.KillAsync(Timeout);

            using (var store = node.OpenStore())
            {
                Assert.Equal(JobStatuses.InProgress, store.Get(ids[longJob])!.Status);
                Assert.True(store.CountQueued() > 0, "some jobs must still be queued at the crash");
                var unpublishedFinals = store.ReadOutbox(10_000).Count(e => store.Get(e.JobId)!.IsFinal && Encoding.UTF8.GetString(e.Payload).Contains("\"type\":\"result\"", StringComparison.Ordinal));
                Assert.True(unpublishedFinals > 0, "some outcomes must be recorded but unpublished at the crash");
            }
        }
        finally
        {
            broker.Process.Signal(SigCont);
        }

        await node.StartReadyAsync();
        await device.WaitForFinalsAsync(ids, Timeout);
        await node.StopAsync();

        var finals = device.AssertOneFinalEach(ids);
        Assert.All(finals.Values, f => Assert.Contains("\"status\":\"SUCCEEDED\"", Encoding.UTF8.GetString(f), StringComparison.Ordinal));

        // Counted in the store: one final outcome per job, the very bytes the device got; only the killed job ran twice.
        using (var store = node.OpenStore())
        {
            foreach (var id in ids)
            {
                var job = store.Get(id)!;
                Assert.Equal(JobStatuses.Succeeded, job.Status);
                Assert.Equal(finals[id], job.FinalEvent);
                Assert.Equal(id == ids[longJob] ? 2 : 1, job.Attempts);
            }
        }

        // And in the executor's log over both runs: each job completed exactly once.
        var completions = node.CountFinishedLines(JobStatuses.Succeeded);
        Assert.Equal(count, completions.Count);
        Assert.All(ids, id => Assert.Equal(1, completions.GetValueOrDefault(id)));
    }
}
