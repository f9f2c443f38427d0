using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace EdgeNode.CloudRelay.Tests.Upstream;

/// <summary>
/// The relay in front of an OpenAI-compatible <c>/v1/completions</c> server (a small Kestrel server in the test),
/// and the relay's own queue, whose occupancy the upstream's answers control exactly.
/// </summary>
[Collection(RelayCollection.Name)]
public sealed class UpstreamBackendTests : IAsyncLifetime
{
    private FakeCompletionsServer _upstream = null!;

    public async Task InitializeAsync() => _upstream = await FakeCompletionsServer.StartAsync();

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    private Task<RelayHost> StartRelayAsync(int maxQueued = 16, int maxConcurrent = 1) => RelayHost.StartAsync(new Dictionary<string, string?>
    {
        ["Relay:Backend"] = "Upstream",
        ["Relay:Upstream:Url"] = _upstream.BaseAddress.ToString(),
        ["Relay:Upstream:Model"] = "served-gpt2",
        ["Relay:Upstream:ApiKey"] = "upstream-secret",
        ["Relay:MaxQueuedJobs"] = maxQueued.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Relay:MaxConcurrentJobs"] = maxConcurrent.ToString(System.Globalization.CultureInfo.InvariantCulture),
    });

    [Fact]
    public async Task Post_UpstreamMode_MapsTheJobToCompletionsAndTheAnswerToAResult()
    {
        _upstream.Handler = (context, _) => FakeCompletionsServer.AnswerAsync(context, " world, again", "stop", 5, 3);
        await using var relay = await StartRelayAsync();

        using var response = await relay.PostAsync(
            """{"id":"up-1","prompt":"Hello","max_new_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":20,"seed":3,"stop":["\n"]}""",
            RelayHost.Token());

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var result = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = result.RootElement;
        Assert.Equal("result", root.GetProperty("type").GetString());
        Assert.Equal("up-1", root.GetProperty("id").GetString());
        Assert.Equal(" world, again", root.GetProperty("text").GetString());
        Assert.Equal("stop", root.GetProperty("finish_reason").GetString());
        Assert.Equal(5, root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(3, root.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("relay", root.GetProperty("executed_on").GetString());

        var sent = Assert.Single(_upstream.Requests);
        Assert.Equal("served-gpt2", sent.GetProperty("model").GetString());
        Assert.Equal("Hello", sent.GetProperty("prompt").GetString());
        Assert.Equal(7, sent.GetProperty("max_tokens").GetInt32());
        Assert.Equal(0.5, sent.GetProperty("temperature").GetDouble(), 6);
        Assert.Equal(0.9, sent.GetProperty("top_p").GetDouble(), 6);
        Assert.Equal(20, sent.GetProperty("top_k").GetInt32());
        Assert.Equal(3, sent.GetProperty("seed").GetInt64());
        Assert.Equal("\n", sent.GetProperty("stop")[0].GetString());
        Assert.False(sent.GetProperty("stream").GetBoolean());
        Assert.Equal("Bearer upstream-secret", Assert.Single(_upstream.Authorizations));
    }

    [Fact]
    public async Task Post_UpstreamModeStreamJob_StreamsTheUpstreamChunksAsTokenEvents()
    {
        _upstream.Handler = (context, _) => FakeCompletionsServer.StreamAsync(context, [" a", " b", "c"], "length");
        await using var relay = await StartRelayAsync();

        using var response = await relay.PostAsync("""{"id":"up-s","prompt":"x","max_new_tokens":3,"stream":true}""", RelayHost.Token(), sse: true);
        var events = await Sse.ReadAllAsync(response);

        Assert.Equal(["accepted", "token", "token", "token", "result"], events.Select(e => e.Event));
        Assert.True(Assert.Single(_upstream.Requests).GetProperty("stream").GetBoolean());
        using var result = JsonDocument.Parse(events[^1].Data);
        Assert.Equal(" a bc", result.RootElement.GetProperty("text").GetString());
        Assert.Equal("length", result.RootElement.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Post_UpstreamFails_Is502AndNothingIsStored()
    {
        _upstream.Handler = (context, _) =>
        {
            context.Response.StatusCode = 500;
            return Task.CompletedTask;
        };
        await using var relay = await StartRelayAsync();
        const string job = """{"id":"up-fail","prompt":"x"}""";

        using var failed = await relay.PostAsync(job, RelayHost.Token());
        _upstream.Handler = (context, _) => FakeCompletionsServer.AnswerAsync(context, "ok", "length", 1, 1);
        using var retried = await relay.PostAsync(job, RelayHost.Token());

        Assert.Equal(HttpStatusCode.BadGateway, failed.StatusCode);
        Assert.Contains("backend_unavailable", await failed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, retried.StatusCode);
        Assert.Equal(2, _upstream.Calls);
    }

    [Fact]
    public async Task Post_UpstreamUnreachable_Is502()
    {
        var port = EdgeNode.TestSupport.Ports.FreeLoopbackPort();
        await using var relay = await RelayHost.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Backend"] = "Upstream",
            ["Relay:Upstream:Url"] = $"http://127.0.0.1:{port}",
        });

        using var response = await relay.PostAsync("""{"prompt":"x"}""", RelayHost.Token());

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
    }

    [Fact]
    public async Task Post_UpstreamThrottles_Is503WithItsRetryAfter()
    {
        _upstream.Handler = (context, _) =>
        {
            context.Response.StatusCode = 429;
            context.Response.Headers.RetryAfter = "7";
            return Task.CompletedTask;
        };
        await using var relay = await StartRelayAsync();

        using var response = await relay.PostAsync("""{"prompt":"x"}""", RelayHost.Token());

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(7), response.Headers.RetryAfter?.Delta);
    }

    [Fact]
    public async Task Post_QueueFull_Is503WithRetryAfter()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _upstream.Handler = async (context, _) =>
        {
            entered.TrySetResult();
            await release.Task;
            await FakeCompletionsServer.AnswerAsync(context, "done", "length", 1, 1);
        };
        await using var relay = await StartRelayAsync(maxQueued: 0);

        var running = relay.PostAsync("""{"id":"q-1","prompt":"x"}""", RelayHost.Token());
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        using var refused = await relay.PostAsync("""{"id":"q-2","prompt":"x"}""", RelayHost.Token());
        release.SetResult();
        using var first = await running;
        using var afterwards = await relay.PostAsync("""{"id":"q-2","prompt":"x"}""", RelayHost.Token());

        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter?.Delta);
        Assert.InRange(refused.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 1, 60);
        Assert.Contains("relay_busy", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, afterwards.StatusCode); // a refused id was not stored: the re-send runs
        Assert.Equal(1, await relay.MetricAsync("edgenode_relay_throttled_total{reason=\"queue_full\"}"));
    }

    [Fact]
    public async Task Post_SameIdWhileRunning_WaitsForTheSameRunAndGetsTheSameBytes()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _upstream.Handler = async (context, _) =>
        {
            entered.TrySetResult();
            await release.Task;
            await FakeCompletionsServer.AnswerAsync(context, "once", "length", 1, 1);
        };
        await using var relay = await StartRelayAsync();
        const string job = """{"id":"dup","prompt":"x"}""";

        var first = relay.PostAsync(job, RelayHost.Token());
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var second = relay.PostAsync(job, RelayHost.Token());
        await WaitForAsync(async () => await relay.MetricAsync("edgenode_relay_idempotent_replays_total") >= 1);
        release.SetResult();
        using var a = await first;
        using var b = await second;

        Assert.Equal(HttpStatusCode.OK, a.StatusCode);
        Assert.Equal(await a.Content.ReadAsByteArrayAsync(), await b.Content.ReadAsByteArrayAsync());
        Assert.Equal(1, _upstream.Calls);
    }

    [Fact]
    public async Task Post_DeadlinePassesInTheRelaysQueue_TimedOutAndNeverRun()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _upstream.Handler = async (context, _) =>
        {
            entered.TrySetResult();
            await release.Task;
            await FakeCompletionsServer.AnswerAsync(context, "slow", "length", 1, 1);
        };
        await using var relay = await StartRelayAsync();

        var blocker = relay.PostAsync("""{"id":"slow","prompt":"x"}""", RelayHost.Token());
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var late = relay.PostAsync("""{"id":"late","prompt":"x","deadline_ms":1}""", RelayHost.Token());
        await WaitForAsync(async () => await relay.MetricAsync("edgenode_relay_jobs_queued") >= 1);
        release.SetResult();
        using var _ = await blocker;
        using var response = await late;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("TIMED_OUT", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal("deadline_exceeded", doc.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(1, _upstream.Calls);
    }

    internal static async Task WaitForAsync(Func<Task<bool>> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            await Task.Delay(20, timeout.Token);
        }
    }
}
