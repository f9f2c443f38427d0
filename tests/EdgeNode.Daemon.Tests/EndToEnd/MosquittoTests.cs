using System.Globalization;
using System.Text.Json;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.EndToEnd;

/// <summary>
/// The main job against a real Mosquitto broker on a loopback port, driven by the real
/// <c>mosquitto_pub</c>/<c>mosquitto_sub</c> clients: MQTT 5 with Response Topic and Correlation Data,
/// and MQTT 3.1.1 with <c>reply_to</c> (DESIGN.md §3 reply-topic rule).
/// </summary>
[Collection("Daemon")]
public sealed class MosquittoTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Mqtt5Device_ResponseTopicAndCorrelationData_GetsAcceptedThenResult()
    {
        await using var broker = await Mosquitto.StartAsync();
        await using var daemon = await DaemonHarness.StartAsync(externalBrokerPort: broker.Port);
        await using var sub = await SubscribeAsync(broker.Port, "mqttv5", "devices/sensor7/replies", "%D|%p");

        await PublishAsync(broker.Port, "mqttv5", "edgenode/jobs",
            """{"id":"m5-1","prompt":"Hello, my name is","max_new_tokens":6,"temperature":0}""",
            "-D", "publish", "response-topic", "devices/sensor7/replies", "-D", "publish", "correlation-data", "corr-42");

        var result = await sub.WaitForLineAsync(l => l.StartsWith("corr-42|", StringComparison.Ordinal) && l.Contains("\"type\":\"result\"", StringComparison.Ordinal), Timeout);
        var accepted = sub.Lines.First(l => l.StartsWith("corr-42|", StringComparison.Ordinal) && l.Contains("\"type\":\"accepted\"", StringComparison.Ordinal));
        Assert.True(sub.Lines.ToList().IndexOf(accepted) < sub.Lines.ToList().IndexOf(result), "accepted must come before result");
        using var doc = JsonDocument.Parse(result["corr-42|".Length..]);
        Assert.Equal("m5-1", doc.RootElement.GetProperty("id").GetString());
        Assert.Equal("SUCCEEDED", doc.RootElement.GetProperty("status").GetString());
        Assert.False(string.IsNullOrEmpty(doc.RootElement.GetProperty("text").GetString()));
    }

    [Fact]
    public async Task Mqtt311Device_ReplyToField_GetsAcceptedThenResult_WithTheNodeOnMqtt311()
    {
        await using var broker = await Mosquitto.StartAsync();
        await using var daemon = await DaemonHarness.StartAsync(externalBrokerPort: broker.Port, protocolVersion: 3);
        await using var sub = await SubscribeAsync(broker.Port, "mqttv311", "devices/old/replies", "%p");

        await PublishAsync(broker.Port, "mqttv311", "edgenode/jobs",
            """{"id":"m3-1","prompt":"The sensor reads","max_new_tokens":5,"reply_to":"devices/old/replies"}""");

        var result = await sub.WaitForLineAsync(l => l.Contains("\"type\":\"result\"", StringComparison.Ordinal), Timeout);
        Assert.Contains(sub.Lines, l => l.Contains("\"type\":\"accepted\"", StringComparison.Ordinal) && l.Contains("\"m3-1\"", StringComparison.Ordinal));
        using var doc = JsonDocument.Parse(result);
        Assert.Equal("m3-1", doc.RootElement.GetProperty("id").GetString());
        Assert.Equal("SUCCEEDED", doc.RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task JobWithoutReplyInfo_GoesToTheDefaultResultsTopic()
    {
        await using var broker = await Mosquitto.StartAsync();
        await using var daemon = await DaemonHarness.StartAsync(externalBrokerPort: broker.Port);
        await using var sub = await SubscribeAsync(broker.Port, "mqttv311", "edgenode/results/plain-1", "%t %p");

        await PublishAsync(broker.Port, "mqttv311", "edgenode/jobs", """{"id":"plain-1","prompt":"Plain","max_new_tokens":3}""");

        var line = await sub.WaitForLineAsync(l => l.Contains("\"type\":\"result\"", StringComparison.Ordinal), Timeout);
        Assert.StartsWith("edgenode/results/plain-1 ", line, StringComparison.Ordinal);
    }

    /// <summary>../shared/cases/bad-payloads.md from a plain client: each row answered on the response topic with its correlation data.</summary>
    [Fact]
    public async Task BadPayloadsFromMosquittoPub_EachAnsweredWithItsCode_ThenAValidJobSucceeds()
    {
        await using var broker = await Mosquitto.StartAsync();
        await using var daemon = await DaemonHarness.StartAsync(externalBrokerPort: broker.Port);
        await using var sub = await SubscribeAsync(broker.Port, "mqttv5", "devices/bad/replies", "%D|%p");
        using var files = new TempDirectory();

        foreach (var (row, payload, codes, _) in BadPayloads.Rows)
        {
            var file = Path.Combine(files.Path, row.ToString(CultureInfo.InvariantCulture) + ".bin");
            await File.WriteAllBytesAsync(file, payload);
            var correlation = "row-" + row.ToString(CultureInfo.InvariantCulture);
            await PublishFileAsync(broker.Port, file, correlation);
            var line = await sub.WaitForLineAsync(l => l.StartsWith(correlation + "|", StringComparison.Ordinal), Timeout);
            using var doc = JsonDocument.Parse(line[(correlation.Length + 1)..]);
            var code = doc.RootElement.GetProperty("error").GetProperty("code").GetString();
            Assert.True(codes.Contains(code), $"row {row}: expected {string.Join(" or ", codes)}, got {code}");
        }

        await PublishAsync(broker.Port, "mqttv5", "edgenode/jobs", """{"id":"after-bad","prompt":"Still serving","max_new_tokens":3}""",
            "-D", "publish", "response-topic", "devices/bad/replies", "-D", "publish", "correlation-data", "valid");
        var ok = await sub.WaitForLineAsync(l => l.StartsWith("valid|", StringComparison.Ordinal) && l.Contains("\"type\":\"result\"", StringComparison.Ordinal), Timeout);
        Assert.Contains("\"SUCCEEDED\"", ok, StringComparison.Ordinal);
    }

    /// <summary>
    /// An event the broker will never take (a wildcard response topic; a topic an ACL denies) must not block the
    /// events behind it in the outbox: found by a newcomer, where one such job stopped all delivery for good.
    /// </summary>
    [Fact]
    public async Task UndeliverableReplyTopics_DoNotBlockTheEventsBehindThem()
    {
        using var acl = new TempDirectory();
        var aclFile = Path.Combine(acl.Path, "acl");
        await File.WriteAllTextAsync(aclFile, "pattern readwrite edgenode/#\npattern readwrite devices/#\ntopic read deny/#\n");
        await using var broker = await Mosquitto.StartAsync("acl_file " + aclFile);
        await using var daemon = await DaemonHarness.StartAsync(externalBrokerPort: broker.Port);
        await using var sub = await SubscribeAsync(broker.Port, "mqttv5", "edgenode/results/#", "%t %p");
        await using var replies = await SubscribeAsync(broker.Port, "mqttv5", "devices/ok", "%p");

        // A wildcard response topic is refused at ingest; its error goes to the default reply topic.
        await PublishAsync(broker.Port, "mqttv5", "edgenode/jobs", """{"id":"wild","prompt":"x","max_new_tokens":2}""",
            "-D", "publish", "response-topic", "r/+");
        var wild = await sub.WaitForLineAsync(l => l.StartsWith("edgenode/results/wild ", StringComparison.Ordinal), Timeout);
        Assert.Contains("invalid_request", wild, StringComparison.Ordinal);

        // A reply_to the ACL forbids: the broker refuses the publish; the job after it is still answered.
        await PublishAsync(broker.Port, "mqttv5", "edgenode/jobs", """{"id":"denied","prompt":"x","max_new_tokens":2,"reply_to":"deny/x"}""");
        await PublishAsync(broker.Port, "mqttv5", "edgenode/jobs", """{"id":"after","prompt":"x","max_new_tokens":2,"reply_to":"devices/ok"}""");
        var after = await replies.WaitForLineAsync(l => l.Contains("\"type\":\"result\"", StringComparison.Ordinal), Timeout);
        Assert.Contains("\"after\"", after, StringComparison.Ordinal);
        Assert.Equal("SUCCEEDED", daemon.Store.Get("denied")!.Status);
    }

    private static Task<ProcessRunner> SubscribeAsync(int port, string version, string topic, string format) =>
        MosquittoClients.SubscribeAsync(port, ["-V", version, "-q", "1", "-t", topic, "-F", format], Timeout);

    private static async Task PublishAsync(int port, string version, string topic, string message, params string[] extra) =>
        Assert.Equal(0, await MosquittoClients.PublishAsync(port, ["-V", version, "-q", "1", "-t", topic, "-m", message, .. extra], Timeout));

    private static async Task PublishFileAsync(int port, string file, string correlation) =>
        Assert.Equal(0, await MosquittoClients.PublishAsync(port,
            ["-V", "mqttv5", "-q", "1", "-t", "edgenode/jobs", "-f", file, "-D", "publish", "response-topic", "devices/bad/replies", "-D", "publish", "correlation-data", correlation], Timeout));
}
