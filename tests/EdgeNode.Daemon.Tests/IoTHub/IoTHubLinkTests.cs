using System.Text.Json;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.IoTHub;
using EdgeNode.TestSupport;
using EdgeNode.TestSupport.IoTHub;
using Microsoft.Extensions.Logging.Abstractions;

namespace EdgeNode.Daemon.Tests.IoTHub;

/// <summary>The IoT Hub link on its own against the emulator (no node host).</summary>
[Collection("Daemon")]
public sealed class IoTHubLinkTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task PublishAsync_EventOver240KB_SentAsOrderedChunksUnder256KB()
    {
        using var dir = new TempDirectory();
        await using var hub = await IoTHubEmulator.StartAsync(dir.Path);
        using var link = new IoTHubLink(Microsoft.Extensions.Options.Options.Create(new IoTHubOptions
        {
            ConnectionString = hub.ConnectionString,
            Port = hub.Port,
            CaFile = hub.CaFile,
            InitialBackoffMilliseconds = 100,
        }), new NodeSignals(), TimeProvider.System, NullLogger<IoTHubLink>.Instance);
        await link.StartAsync(CancellationToken.None);
        try
        {
            await hub.WaitUntilAsync(h => h.Connections.Count == 1, Timeout, "the link's connection");
            var text = new string('x', 600_000);
            var payload = JsonSerializer.SerializeToUtf8Bytes(new { type = "result", id = "big-1", text });

            await link.PublishAsync(link.ReplyTopic("big-1"), payload, CancellationToken.None);

            await hub.WaitUntilAsync(h => h.D2c.Count(m => m.Properties.GetValueOrDefault("jobId") == "big-1") == 3, Timeout, "three chunks");
            var chunks = hub.D2c.Where(m => m.Properties.GetValueOrDefault("jobId") == "big-1").ToList();
            Assert.Equal(["0", "1", "2"], chunks.Select(c => c.Properties["chunk"]));
            Assert.All(chunks, c =>
            {
                Assert.Equal("3", c.Properties["chunks"]);
                Assert.Equal("result", c.Properties["type"]);
                Assert.True(c.Payload.Length <= IoTHubLink.MaxD2cPayloadBytes);
            });
            Assert.Equal(payload, chunks.SelectMany(c => c.Payload).ToArray());
        }
        finally
        {
            await link.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Telemetry_EveryInterval_SendsStatusAsD2c()
    {
        await using var node = await IoTHubNode.StartAsync(extra: new Dictionary<string, string?> { ["IoTHub:TelemetryIntervalSeconds"] = "1" });
        await node.Hub.WaitUntilAsync(h => h.D2c.Any(m => m.Properties.GetValueOrDefault("type") == "telemetry"), Timeout, "a telemetry message");
        var message = node.Hub.D2c.First(m => m.Properties.GetValueOrDefault("type") == "telemetry");
        Assert.Equal("application/json", message.Properties["$.ct"]);
        using var doc = JsonDocument.Parse(message.Payload);
        Assert.Equal("test-node", doc.RootElement.GetProperty("node").GetString());
        Assert.True(doc.RootElement.TryGetProperty("queue_depth", out _));
    }
}
