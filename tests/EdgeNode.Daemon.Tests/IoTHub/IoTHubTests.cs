using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeNode.Daemon.Ingest;
using EdgeNode.Daemon.Options;
using EdgeNode.TestSupport.IoTHub;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Tests.IoTHub;

/// <summary>Acceptance tests of the IoT Hub management plane against the emulator (issue 6).</summary>
[Collection("Daemon")]
public sealed class IoTHubTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static JsonNode? ReportedDesired(IoTHubEmulator hub) => hub.Reported["desired"];

    private static long? ReportedDesiredVersion(IoTHubEmulator hub) =>
        ReportedDesired(hub)?["$version"] is JsonValue v && v.TryGetValue<long>(out var n) ? n : null;

    [Fact]
    public async Task DesiredPatch_ValidValues_AppliedLiveAndReportedWithVersion()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the first reported properties");
        Assert.Equal(1, hub.TwinGets);

        var version = await hub.PatchDesiredAsync(new JsonObject { ["queueMaxJobs"] = 5, ["statusIntervalSeconds"] = 7, ["logLevel"] = "Debug", ["executorCount"] = 4, ["offloadThreshold"] = 0.5 });

        await hub.WaitUntilAsync(h => ReportedDesiredVersion(h) == version, Timeout, "the desired $version reported");
        Assert.Equal("applied", (string?)ReportedDesired(hub)!["status"]);
        Assert.Equal(5, node.Service<IOptions<QueueOptions>>().Value.MaxJobs);
        Assert.Equal(7, node.Service<IOptions<NodeOptions>>().Value.StatusIntervalSeconds);
        Assert.Equal(5, (int?)hub.Reported["config"]!["queueMaxJobs"]);
        Assert.Equal("Debug", (string?)hub.Reported["config"]!["logLevel"]);
        Assert.StartsWith("unsupported", (string?)ReportedDesired(hub)!["notApplied"]!["executorCount"], StringComparison.Ordinal);
        Assert.Equal(0.5, node.Service<EdgeNode.Daemon.Offload.OffloadRouter>().Threshold);
        Assert.Equal(0.5, (double?)hub.Reported["config"]!["offloadThreshold"]);
    }

    [Fact]
    public async Task DesiredPatch_InvalidValue_RejectedAndReported_OldValuesKept()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the first reported properties");

        // One valid and one invalid value: nothing is applied (all-or-nothing per patch).
        var version = await hub.PatchDesiredAsync(new JsonObject { ["queueMaxJobs"] = 5, ["statusIntervalSeconds"] = -1, ["offloadThreshold"] = "high" });

        await hub.WaitUntilAsync(h => ReportedDesiredVersion(h) == version, Timeout, "the rejected $version reported");
        Assert.Equal("rejected", (string?)ReportedDesired(hub)!["status"]);
        var errors = ReportedDesired(hub)!["errors"]!.AsArray().Select(e => (string?)e).ToList();
        Assert.Contains(errors, e => e!.StartsWith("statusIntervalSeconds must be an integer from 1 to 86400", StringComparison.Ordinal));
        Assert.Equal(10_000, node.Service<IOptions<QueueOptions>>().Value.MaxJobs);
        Assert.Equal(30, node.Service<IOptions<NodeOptions>>().Value.StatusIntervalSeconds);
        Assert.Equal(10_000, (int?)hub.Reported["config"]!["queueMaxJobs"]);
        Assert.Contains(errors, e => e!.StartsWith("offloadThreshold must be a number from 0.01 to 100", StringComparison.Ordinal));
        Assert.Equal(0.85, node.Service<EdgeNode.Daemon.Offload.OffloadRouter>().Threshold);
    }

    [Fact]
    public async Task C2dJob_GivesD2cResultWithJobId_AndIsCompletedOnce()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        var mid = await hub.SendC2dAsync("{\"id\":\"c2d-1\",\"prompt\":\"Hello, my name is\",\"max_new_tokens\":4}"u8.ToArray());

        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "c2d-1", "result")), Timeout, "the D2C result of c2d-1");
        var result = hub.D2c.Single(m => IsEvent(m, "c2d-1", "result"));
        Assert.Equal("application/json", result.Properties["$.ct"]);
        Assert.Equal("utf-8", result.Properties["$.ce"]);
        using var doc = JsonDocument.Parse(result.Payload);
        Assert.Equal("c2d-1", doc.RootElement.GetProperty("id").GetString());
        Assert.Equal("SUCCEEDED", doc.RootElement.GetProperty("status").GetString());
        Assert.Single(hub.D2c, m => IsEvent(m, "c2d-1", "accepted"));
        Assert.Equal([mid], hub.C2dCompleted);
    }

    /// <summary>DESIGN.md §3: a job id seen before is never run twice; the resubmission gets the stored outcome again, here as D2C.</summary>
    [Fact]
    public async Task C2dJob_ResubmittedId_GetsStoredOutcomeAgainAsD2c_NotRunTwice()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        var job = "{\"id\":\"dup-1\",\"prompt\":\"Hello\",\"max_new_tokens\":3}"u8.ToArray();
        await hub.SendC2dAsync(job);
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "dup-1", "result")), Timeout, "the first result");
        await hub.SendC2dAsync(job);
        await hub.WaitUntilAsync(h => h.D2c.Count(m => IsEvent(m, "dup-1", "result")) == 2 && h.C2dPending == 0, Timeout, "the stored result again");
        var results = hub.D2c.Where(m => IsEvent(m, "dup-1", "result")).ToList();
        Assert.Equal(results[0].Payload, results[1].Payload);
        Assert.Single(hub.D2c, m => IsEvent(m, "dup-1", "accepted"));
        Assert.Equal(1, (int)node.Service<Health.NodeMetrics>().Succeeded.Value);
    }

    [Fact]
    public async Task DirectMethods_EachRoundTrip_AnswerWithStatusAndJson()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the first reported properties");

        var (status, body) = await hub.InvokeMethodAsync("getStatus", null, Timeout);
        Assert.Equal(200, status);
        Assert.Equal("test-node", (string?)body!["node"]);
        Assert.False((bool)body["draining"]!);

        Assert.Equal(400, (await hub.InvokeMethodAsync("getJob", new JsonObject(), Timeout)).Status);
        Assert.Equal(404, (await hub.InvokeMethodAsync("getJob", new JsonObject { ["id"] = "nope" }, Timeout)).Status);
        Assert.Equal(404, (await hub.InvokeMethodAsync("cancelJob", new JsonObject { ["id"] = "nope" }, Timeout)).Status);
        Assert.Equal(404, (await hub.InvokeMethodAsync("noSuchMethod", null, Timeout)).Status);
        var reload = await hub.InvokeMethodAsync("reloadModel", null, Timeout); // no payload: the current files again
        Assert.Equal(200, reload.Status);
        Assert.Equal("tiny-int8-42.onnx", (string?)reload.Body!["model"]);

        // A finished job: getJob 200 with its outcome, cancelJob 409.
        await hub.SendC2dAsync("{\"id\":\"m-1\",\"prompt\":\"Hi\",\"max_new_tokens\":2}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "m-1", "result")), Timeout, "the result of m-1");
        var job = await hub.InvokeMethodAsync("getJob", new JsonObject { ["id"] = "m-1" }, Timeout);
        Assert.Equal(200, job.Status);
        Assert.Equal("SUCCEEDED", (string?)job.Body!["status"]);
        Assert.Equal("result", (string?)job.Body["final_event"]!["type"]);
        Assert.Equal(409, (await hub.InvokeMethodAsync("cancelJob", new JsonObject { ["id"] = "m-1" }, Timeout)).Status);

        // drain: new jobs are refused with a clear code; resume: accepted again.
        var drain = await hub.InvokeMethodAsync("drain", null, Timeout);
        Assert.Equal(200, drain.Status);
        Assert.True((bool)drain.Body!["draining"]!);
        await hub.SendC2dAsync("{\"id\":\"m-2\",\"prompt\":\"Hi\",\"max_new_tokens\":2}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "m-2", "error")), Timeout, "the refusal of m-2");
        using (var refused = JsonDocument.Parse(hub.D2c.First(m => IsEvent(m, "m-2", "error")).Payload))
        {
            Assert.Equal(JobControl.DrainingCode, refused.RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        Assert.Equal(200, (await hub.InvokeMethodAsync("resume", null, Timeout)).Status);
        await hub.SendC2dAsync("{\"id\":\"m-3\",\"prompt\":\"Hi\",\"max_new_tokens\":2}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "m-3", "result")), Timeout, "the result of m-3");
    }

    [Fact]
    public async Task SasToken_NearExpiry_ReconnectsWithFreshToken_AndNoSecretIsLogged()
    {
        await using var node = await IoTHubNode.StartAsync(extra: new Dictionary<string, string?> { ["IoTHub:TokenTtlSeconds"] = "5" });
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Connections.Count >= 2 && h.TwinGets >= 2, Timeout, "a reconnect with a fresh token");
        var connections = hub.Connections;
        Assert.NotEqual(connections[0].Password, connections[1].Password);
        Assert.True(connections[1].TokenExpiry > connections[0].TokenExpiry);
        Assert.All(connections, c => Assert.False(c.CleanSession));

        // Also a forced disconnect from the hub side: the node comes back by itself.
        var before = hub.Connections.Count;
        await hub.ForceDisconnectAsync();
        await hub.WaitUntilAsync(h => h.Connections.Count > before, Timeout, "a reconnect after a forced disconnect");

        AssertNoSecrets(node);
    }

    [Fact]
    public async Task HubRestart_Reconnects_ReGetsTwin_AndDeliversQueuedC2dExactlyOnce()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.TwinGets >= 1, Timeout, "the first twin GET");

        string? mid = null;
        await hub.RestartAsync(async () => mid = await hub.SendC2dAsync("{\"id\":\"queued-1\",\"prompt\":\"Hello\",\"max_new_tokens\":3}"u8.ToArray()));

        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "queued-1", "result")) && h.C2dPending == 0, Timeout, "the queued C2D job's result");
        Assert.True(hub.TwinGets >= 2, "the twin is read again after the reconnect");
        Assert.Equal([mid!], hub.C2dCompleted);
        Assert.Single(hub.D2c, m => IsEvent(m, "queued-1", "result"));
        AssertNoSecrets(node);
    }

    [Fact]
    public async Task ReportedPatch_Throttled429_RetriedWithBackoff_NotInATightLoop()
    {
        await using var node = await IoTHubNode.StartAsync(beforeStart: h => h.ThrottleReportedPatches(3));
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the reported properties after throttling");
        Assert.Equal(3, hub.Throttled);
        Assert.Equal(4, hub.ReportedPatchRequests); // three 429s, then one success: one request per backoff step
        Assert.Contains(node.Logs.Lines, l => l.Contains("Twin request failed: IoT Hub throttled the request (429)", StringComparison.Ordinal));
    }

    /// <summary>../shared/cases/operations.md 2 and 3: throttling that never recovers, reconnect storms.</summary>
    [Fact]
    public async Task Connect_RefusedWhileThrottled_RetriedWithBackoff_ThenRecoversWithoutRestart()
    {
        await using var node = await IoTHubNode.StartAsync(beforeStart: h => h.RefuseConnections(3));
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Connections.Count == 1 && h.Reported["config"] is not null, Timeout, "a connection after the refusals");
        Assert.Equal(4, hub.ConnectAttempts); // one attempt per backoff step, no storm
        Assert.Equal(3, node.Logs.Lines.Count(l => l.Contains("Cannot connect to IoT Hub", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Start_InvalidConnectionString_FailsNamingTheKey_WithoutTheKey()
    {
        const string Key = "c2VjcmV0LWtleS1ub3QtdG8tYmUtbG9nZ2Vk";
        var ex = await Assert.ThrowsAnyAsync<Exception>(() => IoTHubNode.StartAsync(extra: new Dictionary<string, string?>
        {
            ["IoTHub:ConnectionString"] = "DeviceId=d;SharedAccessKey=" + Key,
        }));
        Assert.Contains("IoTHub:ConnectionString is invalid: HostName is missing", ex.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(Key, ex.ToString(), StringComparison.Ordinal);
    }

    /// <summary>Issue 6: every event of a streamed C2D job (accepted, token..., result) leaves as D2C with the property bag.</summary>
    [Fact]
    public async Task C2dStreamedJob_TokenEventsGoOutAsD2cInOrder_WithPropertyBag()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.SendC2dAsync("{\"id\":\"stream-1\",\"prompt\":\"Hello, my name is\",\"max_new_tokens\":8,\"temperature\":0,\"stream\":true}"u8.ToArray());

        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "stream-1", "result")), Timeout, "the D2C result of stream-1");
        var events = hub.D2c.Where(m => m.Properties.GetValueOrDefault("jobId") == "stream-1").ToList();
        Assert.All(events, m =>
        {
            Assert.Equal("application/json", m.Properties["$.ct"]);
            Assert.Equal("utf-8", m.Properties["$.ce"]);
        });
        Assert.Equal("accepted", events[0].Properties["type"]);
        Assert.Equal("result", events[^1].Properties["type"]);
        var tokens = events[1..^1];
        Assert.NotEmpty(tokens);
        Assert.All(tokens, m => Assert.Equal("token", m.Properties["type"]));
        var docs = tokens.Select(m => JsonDocument.Parse(m.Payload).RootElement.Clone()).ToList();
        Assert.Equal(Enumerable.Range(0, docs.Count), docs.Select(d => d.GetProperty("seq").GetInt32()));
        using var result = JsonDocument.Parse(events[^1].Payload);
        Assert.Equal(result.RootElement.GetProperty("text").GetString(), string.Concat(docs.Select(d => d.GetProperty("text").GetString())));
    }

    /// <summary>Issue 6: the reported properties carry λ, μ, ρ and W (DESIGN.md §5) besides version, model, provider, depth, counters.</summary>
    [Fact]
    public async Task Reported_AfterAJob_CarriesLambdaMuRhoAndW_WithNodeFacts()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.SendC2dAsync("{\"id\":\"rates-1\",\"prompt\":\"Hello\",\"max_new_tokens\":4}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "rates-1", "result")), Timeout, "the result of rates-1");

        // Any desired patch makes the node report; the rates are read then.
        var version = await hub.PatchDesiredAsync(new JsonObject { ["statusIntervalSeconds"] = 9 });
        await hub.WaitUntilAsync(h => ReportedDesiredVersion(h) == version, Timeout, "the report after the patch");

        var reported = hub.Reported;
        var q = reported["queueing"]!;
        var lambda = (double)q["arrivalRate"]!;
        var mu = (double)q["serviceRate"]!;
        var rho = (double)q["utilization"]!;
        Assert.True(lambda > 0, "one job arrived within the window");
        Assert.True(mu > 0, "one service time was measured");
        Assert.Equal(lambda / mu, rho, 0.01 * rho + 1e-3); // each figure is rounded to 4 decimals
        if (rho < 1)
        {
            var w = (double)q["predictedTimeInSystemSeconds"]!;
            Assert.Equal(1 / (mu - lambda), w, 0.01 * w + 1e-3);
        }

        Assert.Equal("tiny-int8-42.onnx", (string?)reported["model"]);
        Assert.Equal("CPU", (string?)reported["executionProvider"]);
        Assert.False(string.IsNullOrEmpty((string?)reported["version"]));
        Assert.Equal(0, (int)reported["queueDepth"]!);
        Assert.Equal(1, (int)reported["jobs"]!["succeeded"]!);
        Assert.Equal(1, (int)reported["jobs"]!["accepted"]!);
    }

    private static bool IsEvent(D2cMessage m, string jobId, string type) =>
        m.Properties.GetValueOrDefault("jobId") == jobId && m.Properties.GetValueOrDefault("type") == type;

    private static void AssertNoSecrets(IoTHubNode node)
    {
        var lines = node.Logs.Lines;
        Assert.NotEmpty(lines);
        var all = string.Join('\n', lines);
        Assert.DoesNotContain(node.Hub.DeviceKey, all, StringComparison.Ordinal);
        Assert.DoesNotContain("SharedAccessSignature", all, StringComparison.Ordinal);
        foreach (var c in node.Hub.Connections)
        {
            var sig = c.Password[(c.Password.IndexOf("sig=", StringComparison.Ordinal) + 4)..c.Password.IndexOf("&se=", StringComparison.Ordinal)];
            Assert.DoesNotContain(sig, all, StringComparison.Ordinal);
            Assert.DoesNotContain(Uri.UnescapeDataString(sig), all, StringComparison.Ordinal);
        }

    }
}
