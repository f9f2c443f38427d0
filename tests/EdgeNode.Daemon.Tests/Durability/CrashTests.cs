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
        await using var node = new NodeProcess(state.Path, broker.Port, "crash") { DecodeStepDelayMs = 3 };
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

    /// <summary>
    /// ../shared/cases/durability.md 5 by real crashes: with <c>Queue:MaxAttempts=2</c> the daemon dies (SIGKILL) in
    /// each of the job's first two runs; at its third start it fails FAILED <c>attempts_exhausted</c> without running,
    /// and the job queued behind it runs.
    /// </summary>
    [Fact]
    public async Task JobThatKillsTheNodeTwice_MaxAttempts2_FailsAttemptsExhausted_AndTheNextJobRuns()
    {
        using var state = new TempDirectory();
        await using var broker = await Mosquitto.StartAsync();
        await using var node = new NodeProcess(state.Path, broker.Port, "poison", "--Queue:MaxAttempts=2") { DecodeStepDelayMs = 2 };
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "poison");

        await device.PublishJobAsync("poison-1", """{"id":"poison-1","prompt":"This one never ends","max_new_tokens":1000}""");
        await device.PublishJobAsync("behind-1", """{"id":"behind-1","prompt":"Waiting behind it","max_new_tokens":4}""");
        for (var attempt = 1; attempt <= 2; attempt++)
        {
            await node.Current.WaitForLineAsync(l => l.Contains($"Job poison-1 started (attempt {attempt})", StringComparison.Ordinal), Timeout);
            await node.Current.KillAsync(Timeout);
            node.Start();
        }

        await device.WaitForFinalsAsync(["poison-1", "behind-1"], Timeout);
        var poison = device.FinalText("poison-1");
        Assert.Contains("\"status\":\"FAILED\"", poison, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"attempts_exhausted\"", poison, StringComparison.Ordinal);
        Assert.Contains("\"status\":\"SUCCEEDED\"", device.FinalText("behind-1"), StringComparison.Ordinal);
        Assert.False(node.CountFinishedLines(JobStatuses.Succeeded).ContainsKey("poison-1"), "the poison job must never complete");
        await node.StopAsync();
        using var store = node.OpenStore();
        Assert.Equal(3, store.Get("poison-1")!.Attempts);
        Assert.Equal(1, store.Get("behind-1")!.Attempts);
    }

    /// <summary>
    /// ../shared/cases/durability.md 7: the node is killed right after Mosquitto logs the node's PUBACK for a job
    /// (the executor is busy with another job, so this one is only queued). The job is in the store at that moment,
    /// the broker will not redeliver it, and after the restart it runs and gets its result.
    /// </summary>
    [Fact]
    public async Task SigkillRightAfterPuback_JobWasCommitted_RunsAfterRestart()
    {
        using var state = new TempDirectory();
        await using var broker = await Mosquitto.StartAsync();
        await using var node = new NodeProcess(state.Path, broker.Port, "ack") { DecodeStepDelayMs = 5 };
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "ack");
        var pubackFromNode = "Received PUBACK from " + node.ClientId;

        await device.PublishJobAsync("busy-1", """{"id":"busy-1","prompt":"Keep the executor busy","max_new_tokens":400}""");
        var first = await broker.Process.WaitForLineAsync(l => l.Contains(pubackFromNode, StringComparison.Ordinal), Timeout);
        await node.Current.WaitForLineAsync(l => l.Contains("Job busy-1 started", StringComparison.Ordinal), Timeout);
        await device.PublishJobAsync("acked-1", """{"id":"acked-1","prompt":"Acknowledged means persisted","max_new_tokens":4}""");
        await broker.Process.WaitForLineAsync(l => l.Contains(pubackFromNode, StringComparison.Ordinal) && l != first, Timeout);
        await node.Current.KillAsync(Timeout);

        using (var store = node.OpenStore())
        {
            Assert.Equal(JobStatuses.Queued, store.Get("acked-1")?.Status);
        }

        await node.StartReadyAsync();
        await device.WaitForFinalsAsync(["acked-1", "busy-1"], Timeout);
        Assert.Contains("\"status\":\"SUCCEEDED\"", device.FinalText("acked-1"), StringComparison.Ordinal);
        device.AssertOneFinalEach(["acked-1", "busy-1"]);
    }
}
