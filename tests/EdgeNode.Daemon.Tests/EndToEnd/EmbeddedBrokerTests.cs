using EdgeNode.Shared.Jobs;
using MQTTnet.Protocol;
using MQTTnet;
using System.Text;
using System.Text.Json;
using EdgeNode.Daemon.Client;

namespace EdgeNode.Daemon.Tests.EndToEnd;

/// <summary>
/// The main job end to end over real connections: the daemon with its embedded MQTTnet broker on an
/// ephemeral loopback port, and an MQTTnet device client publishing QoS 1 jobs with a response topic.
/// </summary>
[Collection("Daemon")]
public sealed class EmbeddedBrokerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Job_OverEmbeddedBroker_AcceptedThenSucceededWithText()
    {
        await using var daemon = await DaemonHarness.StartAsync();
        await using var client = await daemon.ConnectClientAsync();

        var events = await client.RunAsync(Utf8("""{"id":"e2e-1","prompt":"Hello, my name is","max_new_tokens":12,"temperature":0}"""), Timeout);

        Assert.Equal(["accepted", "result"], events.Select(e => e.Type));
        using var accepted = JsonDocument.Parse(events[0].Json);
        Assert.Equal("QUEUED", accepted.RootElement.GetProperty("status").GetString());
        Assert.Equal("local", accepted.RootElement.GetProperty("route").GetString());
        Assert.Equal("test-node", accepted.RootElement.GetProperty("node").GetString());
        using var result = JsonDocument.Parse(events[1].Json);
        var r = result.RootElement;
        Assert.Equal("e2e-1", r.GetProperty("id").GetString());
        Assert.Equal("SUCCEEDED", r.GetProperty("status").GetString());
        Assert.Equal("local", r.GetProperty("executed_on").GetString());
        Assert.Equal(5, r.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        var completion = r.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.InRange(completion, 1, 12);
        Assert.False(string.IsNullOrEmpty(r.GetProperty("text").GetString()));
        Assert.True(r.GetProperty("timings_ms").GetProperty("total").GetDouble() > 0);

        // The stored job ran exactly once and its outcome is the bytes that were published.
        var record = daemon.Store.Get("e2e-1");
        Assert.NotNull(record);
        Assert.Equal("SUCCEEDED", record.Status);
        Assert.Equal(1, record.Attempts);
        Assert.Equal(events[1].Json, Encoding.UTF8.GetString(record.FinalEvent!));
    }

    [Fact]
    public async Task SameIdTwice_RunsOnce_SecondGetsTheStoredOutcomeByteIdentical()
    {
        await using var daemon = await DaemonHarness.StartAsync();
        await using var client = await daemon.ConnectClientAsync();
        var payload = Utf8("""{"id":"dup-1","prompt":"Once upon a time","max_new_tokens":8}""");

        var first = await client.RunAsync(payload, Timeout);
        var second = await client.RunAsync(payload, Timeout);

        Assert.Equal("result", first[^1].Type);
        Assert.Equal(["result"], second.Select(e => e.Type));
        Assert.Equal(first[^1].Json, second[^1].Json);
        Assert.Equal(1, daemon.Store.Get("dup-1")!.Attempts);
    }

    /// <summary>
    /// An invalid message naming a known id gets the id's stored outcome, never a REJECTED event of its own: a
    /// consumer that deduplicates by id (README) must not be able to keep a contradicting outcome.
    /// </summary>
    [Theory]
    [InlineData("""{"id":"known-1","prompt":42}""")]
    [InlineData("""{"id":"known-1","prompt":"Once upon a time","max_new_tokens":5000}""")]
    public async Task InvalidMessage_WithKnownId_GetsTheStoredOutcome_NotARejection(string invalid)
    {
        await using var daemon = await DaemonHarness.StartAsync();
        await using var client = await daemon.ConnectClientAsync();

        var first = await client.RunAsync(Utf8("""{"id":"known-1","prompt":"Once upon a time","max_new_tokens":4}"""), Timeout);
        var again = await client.RunAsync(Utf8(invalid), Timeout);

        Assert.Equal(JobStatuses.Succeeded, first[^1].Status);
        Assert.Equal(["result"], again.Select(e => e.Type));
        Assert.Equal(first[^1].Json, again[^1].Json);
        Assert.Equal(JobStatuses.Succeeded, daemon.Store.Get("known-1")!.Status);
    }

    /// <summary>
    /// reply_to naming the node's own job topic would make the node read its events back as jobs (a newcomer saw
    /// two REJECTED "prompt is required" events for a job that had succeeded): refused with invalid_request on the
    /// default results topic, and nothing is published on the job topic.
    /// </summary>
    [Theory]
    [InlineData("edgenode/jobs")]
    [InlineData("edgenode/nodes/test-node/jobs")]
    [InlineData("edgenode/jobs/x/cancel")]
    [InlineData("edgenode/nodes/test-node/status")]
    public async Task ReplyTo_OneOfTheNodesOwnTopics_RefusedOnTheDefaultTopic_NothingLoopsBack(string replyTo)
    {
        await using var daemon = await DaemonHarness.StartAsync();
        using var watcher = new MqttClientFactory().CreateMqttClient();
        var seen = new System.Collections.Concurrent.ConcurrentQueue<(string Topic, string Payload)>();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        watcher.ApplicationMessageReceivedAsync += e =>
        {
            var text = e.ApplicationMessage.ConvertPayloadToString() ?? "";
            seen.Enqueue((e.ApplicationMessage.Topic, text));
            if (e.ApplicationMessage.Topic == "edgenode/results/after-loop" && text.Contains("\"type\":\"result\"", StringComparison.Ordinal))
            {
                done.TrySetResult();
            }

            return Task.CompletedTask;
        };
        await watcher.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", daemon.BrokerPort).Build());
        await watcher.SubscribeAsync("edgenode/#", MqttQualityOfServiceLevel.AtLeastOnce);

        await watcher.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("edgenode/jobs").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithPayload($$"""{"id":"loop-1","prompt":"Hello","max_new_tokens":2,"reply_to":"{{replyTo}}"}""").Build());
        await watcher.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("edgenode/jobs").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithPayload("""{"id":"after-loop","prompt":"Hello","max_new_tokens":2}""").Build());
        await done.Task.WaitAsync(Timeout); // events leave in order: anything for loop-1 was published before this

        var refusal = Assert.Single(seen, m => m.Topic == "edgenode/results/loop-1");
        Assert.Contains("\"status\":\"REJECTED\"", refusal.Payload, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"invalid_request\"", refusal.Payload, StringComparison.Ordinal);
        Assert.Contains("reply topic", refusal.Payload, StringComparison.Ordinal);
        Assert.DoesNotContain(seen, m => m.Topic == replyTo && m.Payload.Contains("loop-1", StringComparison.Ordinal) && m.Payload.Contains("\"type\"", StringComparison.Ordinal));
        Assert.Null(daemon.Store.Get("loop-1"));
    }

    /// <summary>Every row of ../shared/cases/bad-payloads.md, in one session, then a valid job that must still succeed.</summary>
    [Fact]
    public async Task BadPayloads_EachGetsItsErrorCode_AndTheNodeKeepsServing()
    {
        await using var daemon = await DaemonHarness.StartAsync();
        await using var client = await daemon.ConnectClientAsync();

        foreach (var (row, payload, codes, field) in BadPayloads.Rows)
        {
            var events = await client.RunAsync(payload, Timeout);
            var final = Assert.Single(events);
            Assert.Equal("error", final.Type);
            using var doc = JsonDocument.Parse(final.Json);
            var root = doc.RootElement;
            Assert.Equal("REJECTED", root.GetProperty("status").GetString());
            var code = root.GetProperty("error").GetProperty("code").GetString();
            Assert.True(codes.Contains(code), $"row {row}: expected {string.Join(" or ", codes)}, got {code}: {final.Json}");
            var message = root.GetProperty("error").GetProperty("message").GetString()!;
            if (field is not null)
            {
                Assert.True(message.Contains(field, StringComparison.Ordinal), $"row {row}: message should name '{field}': {message}");
            }

            Assert.False(string.IsNullOrEmpty(root.GetProperty("id").GetString()), $"row {row}: an id must be assigned");
        }

        var ok = await client.RunAsync(Utf8("""{"prompt":"After the bad ones","max_new_tokens":4}"""), Timeout);
        Assert.Equal(["accepted", "result"], ok.Select(e => e.Type));
    }

    [Theory]
    [InlineData("\uFEFF{\"prompt\":\"with a byte-order mark\",\"max_new_tokens\":3}")]
    [InlineData("{\"prompt\":\"unknown fields are ignored\",\"max_new_tokens\":3,\"colour\":\"blue\",\"nested\":{\"a\":[1,2]}}")]
    [InlineData("{\"prompt\":\"stop as one string\",\"max_new_tokens\":3,\"stop\":\"\\n\\n\"}")]
    public async Task AcceptedVariants_Succeed(string payload)
    {
        await using var daemon = await DaemonHarness.StartAsync();
        await using var client = await daemon.ConnectClientAsync();

        var events = await client.RunAsync(Utf8(payload), Timeout);

        Assert.Equal(["accepted", "result"], events.Select(e => e.Type));
        Assert.Equal("SUCCEEDED", events[1].Status);
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}

/// <summary>The payloads of ../shared/cases/bad-payloads.md with their expected codes and the field the message must name.</summary>
internal static class BadPayloads
{
    public static IEnumerable<(int Row, byte[] Payload, string[] Codes, string? Field)> Rows
    {
        get
        {
            yield return (1, Utf8("not json"), ["invalid_json"], null);
            yield return (2, Utf8("{}"), ["invalid_request"], "prompt");
            yield return (3, Utf8("""{"prompt": 42}"""), ["invalid_request"], "prompt");
            yield return (4, Utf8("""{"prompt": ""}"""), ["invalid_request"], "prompt");
            yield return (5, Utf8("[1, 2, 3]"), ["invalid_request"], "object");
            yield return (6, Utf8("""{"prompt": "hi", "max_new_tokens": 0}"""), ["invalid_request"], "max_new_tokens");
            yield return (7, Utf8("""{"prompt": "hi", "max_new_tokens": -5}"""), ["invalid_request"], "max_new_tokens");
            yield return (8, Utf8("""{"prompt": "hi", "max_new_tokens": "32"}"""), ["invalid_request"], "max_new_tokens");
            yield return (9, Utf8("""{"prompt": "hi", "temperature": -1}"""), ["invalid_request"], "temperature");
            yield return (10, Utf8("""{"prompt": "hi", "top_p": 1.5}"""), ["invalid_request"], "top_p");
            yield return (11, Utf8("""{"prompt": "hi", "top_k": -3}"""), ["invalid_request"], "top_k");
            yield return (12, Utf8("""{"prompt": "hi", "deadline_ms": 0}"""), ["invalid_request"], "deadline_ms");
            yield return (13, Utf8("""{"prompt": "hi", "id": ""}"""), ["invalid_request"], "id");
            yield return (14, Utf8("""{"prompt": "hi", "id": "a/b+c#"}"""), ["invalid_request"], "id");
            yield return (15, [0xFF, 0xFE, 0x00, 0x41], ["invalid_json"], null);
            yield return (16, Utf8("{\"prompt\": \"" + new string('a', 70 * 1024) + "\"}"), ["payload_too_large"], null);
            yield return (17, Utf8(new string('[', 10_000)), ["invalid_json"], null);
            yield return (18, Utf8("""{"prompt": "hi", "seed": 1e400}"""), ["invalid_request"], "seed");
            yield return (19, Utf8("{\"prompt\": \"" + string.Concat(Enumerable.Repeat("hello ", 1100)) + "\"}"), ["prompt_too_long"], null);
            yield return (20, Utf8("""{"prompt": "hi", "max_new_tokens": 1000000000}"""), ["invalid_request", "prompt_too_long"], "max_new_tokens");
        }
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
