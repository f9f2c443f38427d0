using System.Globalization;
using System.Text.RegularExpressions;
using EdgeNode.Daemon.Queue;
using EdgeNode.Daemon.Tests.Cli;
using EdgeNode.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// The real daemon as a child process (<c>dotnet edgenode.dll run --Section:Key=value ...</c>) on a state directory
/// that outlives it, so a test can SIGKILL it and start it again on the same store. Every run's output is kept.
/// </summary>
internal sealed partial class NodeProcess : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private readonly List<ProcessRunner> _runs = [];
    private readonly string _nodeId;
    private readonly int _brokerPort;
    private readonly string[] _extra;

    public NodeProcess(string stateDirectory, int brokerPort, string nodeId, params string[] extra)
    {
        StateDirectory = stateDirectory;
        _brokerPort = brokerPort;
        _nodeId = nodeId;
        _extra = extra;
    }

    public string StateDirectory { get; }

    /// <summary>
    /// When above 0, every run pauses this long after each decoded token (test hook <c>Testing:DecodeStepDelayMs</c>
    /// with <c>EDGENODE_TEST_HOOKS=1</c>), so that a test which needs a job still running, or a queue still full, at
    /// some moment does not depend on how fast the machine decodes.
    /// </summary>
    public int DecodeStepDelayMs { get; init; }

    /// <summary>The current (last started) process.</summary>
    public ProcessRunner Current => _runs[^1];

    /// <summary>The broker client id of the node (the daemon's default <c>edgenode-{Node:Id}</c>).</summary>
    public string ClientId => "edgenode-" + _nodeId;

    /// <summary>Every line of every run so far, in run order.</summary>
    public IEnumerable<string> AllLines => _runs.SelectMany(r => r.Lines);

    /// <summary>Starts a run (with the constructor's options) without waiting for anything.</summary>
    public ProcessRunner Start()
    {
        var hooks = DecodeStepDelayMs > 0
            ? new Dictionary<string, string> { ["EDGENODE_TEST_HOOKS"] = "1" }
            : new Dictionary<string, string>();
        var run = EdgeNodeProcess.StartWithEnvironment(hooks,
        [
            "run",
            "--Node:Id=" + _nodeId,
            "--Node:StateDirectory=" + StateDirectory,
            "--Inference:ModelPath=" + Models.TinyInt8,
            "--Mqtt:Host=127.0.0.1",
            "--Mqtt:Port=" + _brokerPort.ToString(CultureInfo.InvariantCulture),
            "--Admin:Url=",
            "--Testing:DecodeStepDelayMs=" + DecodeStepDelayMs.ToString(CultureInfo.InvariantCulture),
            .. _extra,
        ]);
        _runs.Add(run);
        return run;
    }

    /// <summary>Starts a run and waits until it subscribed to its node topic (store open, model loaded, broker link up).</summary>
    public async Task<ProcessRunner> StartReadyAsync()
    {
        var run = Start();
        await run.WaitForLineAsync(l => l.Contains("Subscribed to edgenode/nodes/" + _nodeId + "/jobs", StringComparison.Ordinal), Timeout);
        return run;
    }

    /// <summary>SIGTERM, then asserts the graceful exit code 0 (daemon/README.md: shutdown sequence).</summary>
    public async Task StopAsync()
    {
        Current.Signal(15);
        Assert.Equal(0, await Current.WaitForExitAsync(Timeout));
    }

    /// <summary>Opens the node's store (the daemon must have exited) for inspection; dispose it before the next start.</summary>
    public JobStore OpenStore() => JobStore.Open(StateDirectory, TimeProvider.System, NullLogger.Instance);

    /// <summary>How many times each job was logged as ended with <paramref name="status"/> by the executor, over all runs.</summary>
    public Dictionary<string, int> CountFinishedLines(string status)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var line in AllLines)
        {
            var m = FinishedLine().Match(line);
            if (m.Success && m.Groups["status"].Value == status)
            {
                counts[m.Groups["id"].Value] = counts.GetValueOrDefault(m.Groups["id"].Value) + 1;
            }
        }

        return counts;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var run in _runs)
        {
            await run.DisposeAsync();
        }
    }

    // Executor log event 302: "Job {JobId} {Status} ({Detail})".
    [GeneratedRegex(@"Executor\[302\] Job (?<id>\S+) (?<status>[A-Z_]+) \(")]
    private static partial Regex FinishedLine();
}
