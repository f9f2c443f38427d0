using System.Globalization;
using EdgeNode.Daemon.Queue;
using EdgeNode.Daemon.Tests.Cli;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeNode.Daemon.Tests.Systemd;

/// <summary>
/// The systemd notify protocol as systemd sees it: the real <c>edgenode run</c> process with
/// <c>NOTIFY_SOCKET</c> pointing at a datagram socket owned by the test (the service manager's end),
/// and <c>WATCHDOG_USEC</c> set as systemd sets it for <c>WatchdogSec=</c>.
/// </summary>
[Collection("Daemon")]
public sealed class SystemdNotifyTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    // 3 s watchdog: pings every 1.5 s; a loop busy for 1.5 s without progress withholds them.
    private const string WatchdogUsec = "3000000";

    [Fact]
    public async Task Run_UnderNotifySocket_StatusWhileStarting_ReadyWhenReady_WatchdogPings_StoppingOnSigterm_ExitsZero()
    {
        using var notify = new NotifySocket();
        using var state = new TempDirectory();
        var brokerPort = Ports.FreeLoopbackPort();
        var adminPort = Ports.FreeLoopbackPort();
        // Testing:HangExecutor without EDGENODE_TEST_HOOKS=1 must be inert: the job below still succeeds.
        await using var daemon = EdgeNodeProcess.StartWithEnvironment(
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Path, ["WATCHDOG_USEC"] = WatchdogUsec },
            "run", "--Node:StateDirectory=" + state.Path, "--Mqtt:Embedded:Port=" + Str(brokerPort),
            "--Admin:Url=http://127.0.0.1:" + Str(adminPort), "--Inference:ModelPath=" + Models.TinyInt8, "--Testing:HangExecutor=true");

        var first = await notify.NextAsync(_ => true, Timeout);
        Assert.StartsWith("STATUS=starting: ", first, StringComparison.Ordinal);

        await notify.NextAsync(m => NotifySocket.Has(m, "READY=1"), Timeout);
        // READY=1 means ready: /readyz (store open, model loaded, broker connected) already says so.
        using (var http = new HttpClient())
        {
            using var readyz = await http.GetAsync(new Uri($"http://127.0.0.1:{adminPort}/readyz"));
            Assert.Equal(System.Net.HttpStatusCode.OK, readyz.StatusCode);
        }

        await notify.NextAsync(m => NotifySocket.Has(m, "WATCHDOG=1"), Timeout);

        // A job runs while the watchdog is armed; pings continue after it.
        await using (var sub = await MosquittoClients.SubscribeAsync(brokerPort, ["-t", "edgenode/results/#", "-q", "1", "-v"], Timeout))
        {
            Assert.Equal(0, await MosquittoClients.PublishAsync(brokerPort, ["-q", "1", "-t", "edgenode/jobs", "-m", """{"id":"wd-1","prompt":"Hello","max_new_tokens":8}"""], Timeout));
            var result = await sub.WaitForLineAsync(l => l.StartsWith("edgenode/results/wd-1 ", StringComparison.Ordinal) && l.Contains("\"result\"", StringComparison.Ordinal), Timeout);
            Assert.Contains("\"SUCCEEDED\"", result, StringComparison.Ordinal);
        }

        await notify.NextAsync(m => NotifySocket.Has(m, "WATCHDOG=1"), Timeout);
        await notify.NextAsync(m => NotifySocket.Has(m, "WATCHDOG=1"), Timeout);

        daemon.Signal(15);
        await notify.NextAsync(m => NotifySocket.Has(m, "STOPPING=1"), Timeout);
        Assert.Equal(0, await daemon.WaitForExitAsync(Timeout));

        var messages = notify.Messages;
        Assert.Single(messages, m => NotifySocket.Has(m, "READY=1"));
        var ready = IndexOf(messages, "READY=1");
        Assert.True(messages.Take(ready).All(m => m.StartsWith("STATUS=starting: ", StringComparison.Ordinal)), string.Join("\n---\n", messages));
        Assert.Contains(messages.Take(ready), m => m == "STATUS=starting: loading model");
        Assert.True(IndexOf(messages, "WATCHDOG=1") > ready, "no watchdog ping before READY=1");
        Assert.DoesNotContain(messages, m => m.Contains("withheld", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Run_ExecutorHangsInDecode_WatchdogPingsStop_AndStatusNamesTheLoop()
    {
        using var notify = new NotifySocket();
        using var state = new TempDirectory();
        var brokerPort = Ports.FreeLoopbackPort();
        await using var daemon = EdgeNodeProcess.StartWithEnvironment(
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Path, ["WATCHDOG_USEC"] = WatchdogUsec, ["EDGENODE_TEST_HOOKS"] = "1" },
            "run", "--Node:StateDirectory=" + state.Path, "--Mqtt:Embedded:Port=" + Str(brokerPort),
            "--Admin:Url=", "--Inference:ModelPath=" + Models.TinyInt8, "--Testing:HangExecutor=true");

        await notify.NextAsync(m => NotifySocket.Has(m, "READY=1"), Timeout);
        await notify.NextAsync(m => NotifySocket.Has(m, "WATCHDOG=1"), Timeout);

        Assert.Equal(0, await MosquittoClients.PublishAsync(brokerPort, ["-q", "1", "-t", "edgenode/jobs", "-m", """{"id":"hang-1","prompt":"Hello","max_new_tokens":8}"""], Timeout));

        await notify.NextAsync(m => m.StartsWith("STATUS=watchdog withheld: the executor loop", StringComparison.Ordinal), Timeout);
        // Every later tick withholds the ping too: systemd would restart the service after WatchdogSec.
        for (var i = 0; i < 3; i++)
        {
            var next = await notify.NextAsync(_ => true, Timeout);
            Assert.False(NotifySocket.Has(next, "WATCHDOG=1"), "a watchdog ping was sent while the executor hung");
            Assert.StartsWith("STATUS=watchdog withheld: the executor loop", next, StringComparison.Ordinal);
        }

        Assert.Contains(daemon.Lines, l => l.Contains("Withholding the systemd watchdog ping", StringComparison.Ordinal));
    }

    /// <summary>SIGTERM while jobs run: exit 0, no job lost (each finished or back in the queue), and after a restart every job ends SUCCEEDED.</summary>
    [Fact]
    public async Task Run_SigtermWhileJobsRun_ExitsZero_NoJobLost_RestartFinishesThem()
    {
        using var notify = new NotifySocket();
        using var state = new TempDirectory();
        var brokerPort = Ports.FreeLoopbackPort();
        string[] args = ["run", "--Node:StateDirectory=" + state.Path, "--Mqtt:Embedded:Port=" + Str(brokerPort), "--Admin:Url=", "--Inference:ModelPath=" + Models.TinyInt8];
        var env = new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Path };
        var ids = Enumerable.Range(1, 6).Select(i => "term-" + Str(i)).ToArray();

        await using (var daemon = EdgeNodeProcess.StartWithEnvironment(env, args))
        {
            await notify.NextAsync(m => NotifySocket.Has(m, "READY=1"), Timeout);
            await using var sub = await MosquittoClients.SubscribeAsync(brokerPort, ["-t", "edgenode/results/#", "-q", "1", "-v"], Timeout);
            foreach (var id in ids)
            {
                // QoS 1: mosquitto_pub exits 0 after the PUBACK, i.e. after the job is committed.
                Assert.Equal(0, await MosquittoClients.PublishAsync(brokerPort, ["-q", "1", "-t", "edgenode/jobs", "-m",
                    $$"""{"id":"{{id}}","prompt":"Once upon a time","max_new_tokens":200,"temperature":0}"""], Timeout));
            }

            // The first job finished: the executor is on the next one when SIGTERM arrives.
            await sub.WaitForLineAsync(l => l.StartsWith("edgenode/results/term-", StringComparison.Ordinal) && l.Contains("\"result\"", StringComparison.Ordinal), Timeout);
            daemon.Signal(15);
            await notify.NextAsync(m => NotifySocket.Has(m, "STOPPING=1"), Timeout);
            Assert.Equal(0, await daemon.WaitForExitAsync(Timeout));
        }

        using (var store = JobStore.Open(state.Path, TimeProvider.System, NullLogger.Instance))
        {
            foreach (var id in ids)
            {
                var job = store.Get(id);
                Assert.NotNull(job);
                Assert.Contains(job.Status, new[] { JobStatuses.Succeeded, JobStatuses.Queued });
            }

            Assert.Contains(ids, id => store.Get(id)!.Status == JobStatuses.Succeeded);
        }

        await using (var restarted = EdgeNodeProcess.StartWithEnvironment(env, args))
        {
            await notify.NextAsync(m => NotifySocket.Has(m, "READY=1"), Timeout);
            await using var sub = await MosquittoClients.SubscribeAsync(brokerPort, ["-t", "edgenode/results/#", "-q", "1", "-v"], Timeout);
            // Resubmitting a known id returns its stored outcome (DESIGN.md §3): every id ends SUCCEEDED.
            foreach (var id in ids)
            {
                Assert.Equal(0, await MosquittoClients.PublishAsync(brokerPort, ["-q", "1", "-t", "edgenode/jobs", "-m",
                    $$"""{"id":"{{id}}","prompt":"Once upon a time","max_new_tokens":200,"temperature":0}"""], Timeout));
                var line = await sub.WaitForLineAsync(l => l.StartsWith("edgenode/results/" + id + " ", StringComparison.Ordinal) && l.Contains("\"result\"", StringComparison.Ordinal), Timeout);
                Assert.Contains("\"SUCCEEDED\"", line, StringComparison.Ordinal);
            }

            restarted.Signal(15);
            Assert.Equal(0, await restarted.WaitForExitAsync(Timeout));
        }
    }

    private static int IndexOf(IReadOnlyList<string> messages, string assignment)
    {
        for (var i = 0; i < messages.Count; i++)
        {
            if (NotifySocket.Has(messages[i], assignment))
            {
                return i;
            }
        }

        return -1;
    }

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);
}
