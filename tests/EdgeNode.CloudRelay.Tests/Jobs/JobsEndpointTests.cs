using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace EdgeNode.CloudRelay.Tests.Jobs;

/// <summary>POST /v1/jobs on the embedded backend over real HTTP: limits, validation, SSE, idempotency.</summary>
[Collection(RelayCollection.Name)]
public sealed class JobsEndpointTests(RelayFixture fixture) : IClassFixture<RelayFixture>
{
    private RelayHost Relay => fixture.Relay;

    [Fact]
    public async Task Post_BodyOverLimit_Is413WithPayloadTooLarge()
    {
        // bad-payloads case 16: a valid job of 70 KiB (limit 64 KiB).
        var json = "{\"prompt\":\"" + new string('a', 70 * 1024) + "\"}";

        using var response = await Relay.PostAsync(json, RelayHost.Token());

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("error", doc.RootElement.GetProperty("type").GetString());
        Assert.Equal("REJECTED", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal("payload_too_large", doc.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Post_ChunkedBodyOverLimitWithoutContentLength_Is413()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/jobs")
        {
            Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes("{\"prompt\":\"" + new string('b', 80 * 1024) + "\"}"))),
        };
        request.Headers.TransferEncodingChunked = true;
        request.Headers.TryAddWithoutValidation("Authorization", RelayHost.Token());

        using var response = await Relay.Http.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("payload_too_large", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("not json", "invalid_json")]
    [InlineData("{}", "invalid_request")]
    [InlineData("{\"prompt\": 42}", "invalid_request")]
    [InlineData("[1, 2, 3]", "invalid_request")]
    [InlineData("{\"prompt\": \"hi\", \"max_new_tokens\": 0}", "invalid_request")]
    [InlineData("{\"prompt\": \"hi\", \"top_p\": 1.5}", "invalid_request")]
    [InlineData("{\"prompt\": \"hi\", \"id\": \"a/b+c#\"}", "invalid_request")]
    [InlineData("{\"prompt\": \"hi\", \"seed\": 1e400}", "invalid_request")]
    public async Task Post_BadPayload_Is400WithTheContractsErrorEvent(string payload, string code)
    {
        using var response = await Relay.PostAsync(payload, RelayHost.Token());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("REJECTED", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal(code, doc.RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Post_NonUtf8Bytes_Is400InvalidJson()
    {
        using var response = await Relay.PostAsync(new byte[] { 0xFF, 0xFE, 0x00, 0x41 }, RelayHost.Token());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("invalid_json", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Post_DeeplyNestedArrays_Is400InvalidJsonAndTheRelayKeepsServing()
    {
        using var response = await Relay.PostAsync(new string('[', 10_000), RelayHost.Token());
        using var health = await Relay.Http.GetAsync("/healthz");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("invalid_json", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task Post_PromptTooLong_Is400PromptTooLong()
    {
        // bad-payloads case 19: 1,100 GPT-2 tokens.
        var json = JsonSerializer.Serialize(new { prompt = string.Concat(Enumerable.Repeat("hello ", 1100)) });

        using var response = await Relay.PostAsync(json, RelayHost.Token());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("\"prompt_too_long\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Post_UnknownFieldsBomAndSingleStop_AreAccepted()
    {
        var json = Encoding.UTF8.GetBytes("\uFEFF{\"prompt\":\"Hi\",\"max_new_tokens\":2,\"future_field\":[1],\"stop\":\"\\n\\n\"}");

        using var response = await Relay.PostAsync(json, RelayHost.Token());

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Post_EventStream_EventsEqualTheJsonResult()
    {
        var id = "sse-" + Guid.NewGuid().ToString("N");
        var job = $$"""{"id":"{{id}}","prompt":"Hello, my name is","max_new_tokens":12,"seed":42,"temperature":0.8,"stream":true}""";

        using var sse = await Relay.PostAsync(job, RelayHost.Token(), sse: true);
        Assert.Equal(HttpStatusCode.OK, sse.StatusCode);
        Assert.Equal("text/event-stream", sse.Content.Headers.ContentType?.MediaType);
        var events = await Sse.ReadAllAsync(sse);

        // accepted, then one token event per generated token, then the result.
        Assert.Equal("accepted", events[0].Event);
        using (var accepted = JsonDocument.Parse(events[0].Data))
        {
            Assert.Equal(id, accepted.RootElement.GetProperty("id").GetString());
            Assert.Equal("relay", accepted.RootElement.GetProperty("route").GetString());
        }

        Assert.Equal("result", events[^1].Event);
        var tokens = events.Skip(1).SkipLast(1).ToList();
        Assert.All(tokens, t => Assert.Equal("token", t.Event));
        var texts = tokens.Select((t, i) =>
        {
            using var doc = JsonDocument.Parse(t.Data);
            Assert.Equal(i, doc.RootElement.GetProperty("seq").GetInt32());
            return doc.RootElement.GetProperty("text").GetString()!;
        }).ToList();
        using var result = JsonDocument.Parse(events[^1].Data);
        Assert.Equal(result.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), tokens.Count);
        Assert.Equal(result.RootElement.GetProperty("text").GetString(), string.Concat(texts));

        // The JSON answer for the same job is the same final event, byte for byte.
        using var json = await Relay.PostAsync(job, RelayHost.Token());
        Assert.Equal(HttpStatusCode.OK, json.StatusCode);
        Assert.Equal(events[^1].Data, await json.Content.ReadAsStringAsync());

        // A fresh job with the same seed gives the same content (timings aside).
        using var again = await Relay.PostAsync(job.Replace(id, id + "-b", StringComparison.Ordinal), RelayHost.Token());
        using var other = JsonDocument.Parse(await again.Content.ReadAsStringAsync());
        foreach (var field in new[] { "status", "text", "finish_reason", "executed_on", "node" })
        {
            Assert.Equal(result.RootElement.GetProperty(field).GetString(), other.RootElement.GetProperty(field).GetString());
        }

        Assert.Equal(result.RootElement.GetProperty("usage").GetRawText(), other.RootElement.GetProperty("usage").GetRawText());
    }

    [Fact]
    public async Task Post_SameIdTwice_SameBytesAndRunsOnce()
    {
        var id = "idem-" + Guid.NewGuid().ToString("N");
        var job = $$"""{"id":"{{id}}","prompt":"Once","max_new_tokens":4}""";
        var ranBefore = await Relay.MetricAsync("edgenode_relay_jobs_total{status=\"SUCCEEDED\"}");

        using var first = await Relay.PostAsync(job, RelayHost.Token());
        using var second = await Relay.PostAsync(job, RelayHost.Token());

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(await first.Content.ReadAsByteArrayAsync(), await second.Content.ReadAsByteArrayAsync());
        Assert.Equal(ranBefore + 1, await Relay.MetricAsync("edgenode_relay_jobs_total{status=\"SUCCEEDED\"}"));
    }

    [Fact]
    public async Task Post_SameIdFromAnotherDevice_IsThatDevicesOwnJob()
    {
        var id = "shared-" + Guid.NewGuid().ToString("N");
        var ranBefore = await Relay.MetricAsync("edgenode_relay_jobs_total{status=\"SUCCEEDED\"}");

        using var first = await Relay.PostAsync($$"""{"id":"{{id}}","prompt":"A","max_new_tokens":2}""", RelayHost.Token());
        using var second = await Relay.PostAsync($$"""{"id":"{{id}}","prompt":"B","max_new_tokens":2}""",
            RelayHost.Token(RelayHost.OtherDevice, RelayHost.OtherKey));

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(ranBefore + 2, await Relay.MetricAsync("edgenode_relay_jobs_total{status=\"SUCCEEDED\"}"));
    }

    [Fact]
    public async Task Probes_ReadyRelay_AnswerOkAndExposeMetrics()
    {
        using var health = await Relay.Http.GetAsync("/healthz");
        using var ready = await Relay.Http.GetAsync("/readyz");
        var metrics = await Relay.Http.GetStringAsync("/metrics");

        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Contains("\"backend\":\"embedded\"", await ready.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Contains("# TYPE edgenode_relay_requests_total counter", metrics, StringComparison.Ordinal);
        Assert.Contains("edgenode_relay_service_rate_jobs_per_second", metrics, StringComparison.Ordinal);
    }
}

/// <summary>Device quotas: 429 with Retry-After (System.Threading.RateLimiting fixed window).</summary>
[Collection(RelayCollection.Name)]
public sealed class DeviceQuotaTests
{
    [Fact]
    public async Task Post_DeviceOverItsQuota_Is429WithRetryAfterAndOtherDevicesAreServed()
    {
        await using var relay = await RelayHost.StartAsync(new Dictionary<string, string?>
        {
            [$"Relay:Devices:{RelayHost.Device}:RequestsPerMinute"] = "2",
        });
        const string job = """{"prompt":"q","max_new_tokens":1}""";

        using var one = await relay.PostAsync(job, RelayHost.Token());
        using var two = await relay.PostAsync(job, RelayHost.Token());
        using var three = await relay.PostAsync(job, RelayHost.Token());
        using var other = await relay.PostAsync(job, RelayHost.Token(RelayHost.OtherDevice, RelayHost.OtherKey));

        Assert.Equal(HttpStatusCode.OK, one.StatusCode);
        Assert.Equal(HttpStatusCode.OK, two.StatusCode);
        Assert.Equal((HttpStatusCode)429, three.StatusCode);
        var retryAfter = three.Headers.RetryAfter?.Delta;
        Assert.NotNull(retryAfter);
        Assert.InRange(retryAfter.Value.TotalSeconds, 1, 60);
        Assert.Contains("quota_exceeded", await three.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        Assert.Equal(1, await relay.MetricAsync("edgenode_relay_throttled_total{reason=\"quota\"}"));
    }
}

/// <summary>The daemon's relay client (shared/Offload) against the real relay.</summary>
[Collection(RelayCollection.Name)]
public sealed class RelayClientIntegrationTests(RelayFixture fixture) : IClassFixture<RelayFixture>
{
    [Fact]
    public async Task SubmitAsync_RealRelay_CompletesAndAReSendGetsTheSameBytes()
    {
        using var http = new HttpClient();
        var client = new EdgeNode.Shared.Offload.RelayClient(http, new EdgeNode.Shared.Offload.RelayClientOptions
        {
            RelayUrl = fixture.Relay.BaseAddress,
            DeviceId = RelayHost.Device,
            DeviceKey = RelayHost.DeviceKey,
        }, TimeProvider.System);
        var id = "client-" + Guid.NewGuid().ToString("N");
        var job = Encoding.UTF8.GetBytes($$"""{"id":"{{id}}","prompt":"Offloaded","max_new_tokens":6,"seed":5,"stream":true}""");
        var streamed = new List<string>();

        var first = await client.SubmitAsync(job, id, e => streamed.Add(Encoding.UTF8.GetString(e)));
        var resent = await client.SubmitAsync(job, id);

        Assert.Equal(EdgeNode.Shared.Offload.RelayOutcomeKind.Completed, first.Kind);
        Assert.Equal("SUCCEEDED", first.Status);
        Assert.Equal(7, streamed.Count); // accepted + 6 tokens
        Assert.Equal(first.Event, resent.Event);
    }
}

/// <summary>The idempotency window (<c>Relay:RetentionSeconds</c>), on a fake clock.</summary>
[Collection(RelayCollection.Name)]
public sealed class RetentionTests
{
    [Fact]
    public async Task Post_ReSendAfterTheRetentionWindow_RunsAgainButWithinItGetsTheStoredOutcome()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var relay = await RelayHost.StartAsync(new Dictionary<string, string?> { ["Relay:RetentionSeconds"] = "60" }, time);
        const string job = """{"id":"kept","prompt":"x","max_new_tokens":2,"seed":1}""";

        using var first = await relay.PostAsync(job, RelayHost.Token());
        time.Advance(TimeSpan.FromSeconds(59));
        using var within = await relay.PostAsync(job, RelayHost.Token());
        var ranWithin = await relay.MetricAsync("edgenode_relay_jobs_total{status=\"SUCCEEDED\"}");
        time.Advance(TimeSpan.FromSeconds(2));
        using var after = await relay.PostAsync(job, RelayHost.Token());

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(await first.Content.ReadAsByteArrayAsync(), await within.Content.ReadAsByteArrayAsync());
        Assert.Equal(1, ranWithin);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        Assert.Equal(2, await relay.MetricAsync("edgenode_relay_jobs_total{status=\"SUCCEEDED\"}"));
    }
}
