using System.Globalization;
using System.Text.Json;
using EdgeNode.Shared.Inference.Synthesis;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Cli;

/// <summary>The <c>edgenode</c> program as a user runs it: separate processes, real sockets, real files.</summary>
[Collection("Daemon")]
public sealed class CliTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(180);

    [Fact]
    public async Task Version_PrintsTheProductVersion()
    {
        await using var p = EdgeNodeProcess.Start("--version");
        Assert.Equal(0, await p.WaitForExitAsync(Timeout));
        Assert.Contains(p.Lines, l => l.StartsWith("0.", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Demo_PrintsSucceededResults_AndExitsZero()
    {
        await using var p = EdgeNodeProcess.Start("demo");
        Assert.Equal(0, await p.WaitForExitAsync(Timeout));
        Assert.True(p.Lines.Count(l => l.Contains(": SUCCEEDED", StringComparison.Ordinal)) >= 3, string.Join('\n', p.Lines));
        Assert.Contains(p.Lines, l => l.Contains("REJECTED", StringComparison.Ordinal));
        Assert.Contains(p.Lines, l => l.Contains("invalid_request", StringComparison.Ordinal));
    }

    /// <summary>The README's "run, then mosquitto_pub by hand": the daemon process on its embedded broker, a real mosquitto client.</summary>
    [Fact]
    public async Task Run_ThenMosquittoPubByHand_ResultOnDefaultTopic()
    {
        using var state = new TempDirectory();

        var result = await RunOneJobByHandAsync(state.Path, "by-hand", "--Inference:ModelPath=" + Models.TinyInt8);

        Assert.Equal("SUCCEEDED", result.GetProperty("status").GetString());
    }

    /// <summary>With no model configured the node synthesizes the demonstration model (tiny INT8, LM head quantized) into its
    /// state directory, byte-identical to <see cref="DemonstrationModel.Options"/> (what the relay synthesizes too), and runs jobs on it.</summary>
    [Fact]
    public async Task Run_WithoutModelPath_SynthesizesTheDemonstrationModelAndRunsJobs()
    {
        using var state = new TempDirectory();

        var result = await RunOneJobByHandAsync(state.Path, "default-model");

        Assert.Equal("SUCCEEDED", result.GetProperty("status").GetString());
        Assert.InRange(result.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 1, 4);
        var written = Path.Combine(state.Path, "models", DemonstrationModel.FileName);
        Assert.Equal(ModelSynthesizer.Synthesize(DemonstrationModel.Options), await File.ReadAllBytesAsync(written));
    }

    /// <summary>
    /// Starts <c>edgenode run</c> on its embedded broker, publishes one job (4 new tokens) with <c>mosquitto_pub</c>, reads its
    /// result event on the default reply topic with <c>mosquitto_sub</c>, stops the daemon with SIGTERM (exit 0 asserted).
    /// </summary>
    private static async Task<JsonElement> RunOneJobByHandAsync(string statePath, string jobId, params string[] extraArgs)
    {
        var port = Ports.FreeLoopbackPort();
        await using var daemon = EdgeNodeProcess.Start(["run", "--Node:StateDirectory=" + statePath,
            "--Mqtt:Embedded:Port=" + port.ToString(CultureInfo.InvariantCulture), "--Admin:Url=http://127.0.0.1:0", .. extraArgs]);
        await daemon.WaitForLineAsync(l => l.Contains("Subscribed to edgenode/nodes/", StringComparison.Ordinal), Timeout);
        await using var sub = await MosquittoClients.SubscribeAsync(port, ["-t", "edgenode/results/#", "-q", "1", "-v"], Timeout);

        Assert.Equal(0, await MosquittoClients.PublishAsync(port, ["-q", "1", "-t", "edgenode/jobs", "-m", $$"""{"id":"{{jobId}}","prompt":"Hello","max_new_tokens":4}"""], Timeout));

        var prefix = $"edgenode/results/{jobId} ";
        var line = await sub.WaitForLineAsync(l => l.StartsWith(prefix + "{", StringComparison.Ordinal) && l.Contains("\"result\"", StringComparison.Ordinal), Timeout);
        using var doc = JsonDocument.Parse(line[prefix.Length..]);
        daemon.Signal(15);
        Assert.Equal(0, await daemon.WaitForExitAsync(Timeout));
        return doc.RootElement.Clone();
    }

    [Theory]
    [InlineData("--Mqtt:Port=abc", "Mqtt:Port: 'abc' is not an integer")]
    [InlineData("--Mqtt:ProtocolVersion=4", "Mqtt:ProtocolVersion")]
    [InlineData("--Inference:ModelPath=/nonexistent/model.onnx", "Inference:ModelPath names a file that does not exist: '/nonexistent/model.onnx'")]
    [InlineData("--Node:Id=a/b", "Node:Id")]
    [InlineData("--Queue:MaxJobs=-1", "Queue:MaxJobs must be between")]
    [InlineData("--Queue:MaxJob=5", "Queue:MaxJob")] // a misspelt key is an error, not silently ignored
    [InlineData("--Offload:RhoTreshold=0.9", "Offload:RhoTreshold")]
    [InlineData("--Offload:RelayUrl=ftp://x", "Offload:RelayUrl")]
    [InlineData("--Offload:RhoExitThreshold=0.95", "Offload:RhoExitThreshold")]
    public async Task Run_BadConfiguration_ExitsTwoNamingTheKeyWithoutStackTrace(string arg, string key)
    {
        using var state = new TempDirectory();
        await using var p = EdgeNodeProcess.Start("run", "--Node:StateDirectory=" + state.Path, "--Admin:Url=", arg);
        Assert.Equal(2, await p.WaitForExitAsync(Timeout));
        Assert.Contains(p.Lines, l => l.StartsWith("edgenode: invalid configuration", StringComparison.Ordinal) && l.Contains(key, StringComparison.Ordinal));
        Assert.DoesNotContain(p.Lines, l => l.Contains("   at ", StringComparison.Ordinal) || l.Contains("Hosting failed to start", StringComparison.Ordinal));
        Assert.DoesNotContain(p.Lines, l => l.Contains("System.", StringComparison.Ordinal) || l.Contains("DataAnnotation", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("missing", "does not exist")]
    [InlineData("{\"Queue\": {\"MaxJobs\": 5,}", "LineNumber")]
    [InlineData("{\"Queue\": {\"MaxJob\": 5}}", "unknown key Queue:MaxJob")]
    public async Task Run_BadConfigurationFile_ExitsTwoNamingTheFileOrKey(string content, string expected)
    {
        using var state = new TempDirectory();
        var file = Path.Combine(state.Path, "edgenode.json");
        if (content != "missing")
        {
            await File.WriteAllTextAsync(file, content);
        }

        await using var p = EdgeNodeProcess.StartWithEnvironment(new Dictionary<string, string> { ["EDGENODE_CONFIG"] = file },
            "run", "--Node:StateDirectory=" + state.Path, "--Admin:Url=");
        Assert.Equal(2, await p.WaitForExitAsync(Timeout));
        Assert.Contains(p.Lines, l => l.StartsWith("edgenode: invalid configuration", StringComparison.Ordinal) && l.Contains(expected, StringComparison.Ordinal)
                                      && (expected.StartsWith("unknown", StringComparison.Ordinal) || l.Contains(file, StringComparison.Ordinal)));
    }

    /// <summary>../shared/cases/durability.md 2: a second instance on the same state directory exits non-zero naming the lock.</summary>
    [Fact]
    public async Task Run_SecondInstanceOnSameState_ExitsNonZeroNamingTheLock_FirstKeepsServing()
    {
        using var state = new TempDirectory();
        var port = Ports.FreeLoopbackPort().ToString(CultureInfo.InvariantCulture);
        await using var first = EdgeNodeProcess.Start("run", "--Node:StateDirectory=" + state.Path, "--Mqtt:Embedded:Port=" + port,
            "--Admin:Url=", "--Inference:ModelPath=" + Models.TinyInt8);
        await first.WaitForLineAsync(l => l.Contains("Subscribed to edgenode/nodes/", StringComparison.Ordinal), Timeout);

        await using var second = EdgeNodeProcess.Start("run", "--Node:StateDirectory=" + state.Path,
            "--Mqtt:Embedded:Port=" + Ports.FreeLoopbackPort().ToString(CultureInfo.InvariantCulture), "--Admin:Url=", "--Inference:ModelPath=" + Models.TinyInt8);
        Assert.NotEqual(0, await second.WaitForExitAsync(Timeout));
        Assert.Contains(second.Lines, l => l.Contains("edgenode.lock", StringComparison.Ordinal));
        Assert.False(first.Exited.IsCompleted);

        await using var submit = EdgeNodeProcess.Start("submit", "--port", port, "--max-new-tokens", "3", "still serving");
        Assert.Equal(0, await submit.WaitForExitAsync(Timeout));
        Assert.Contains(submit.Lines, l => l.Contains("\"SUCCEEDED\"", StringComparison.Ordinal));
    }
}
