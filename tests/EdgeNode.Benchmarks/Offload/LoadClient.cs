using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeNode.Benchmarks.Offload;

/// <summary>What the client saw of one job: when it was published, its route, its final event(s).</summary>
internal sealed class JobTrace(string id, long publishedAt)
{
    public string Id { get; } = id;

    /// <summary><see cref="Stopwatch.GetTimestamp"/> just before the PUBLISH.</summary>
    public long PublishedAt { get; } = publishedAt;

    /// <summary>The <c>accepted</c> event's <c>route</c> (local | relay), or null.</summary>
    public string? Route { get; set; }

    /// <summary>Timestamp of the first final event (<c>result</c> or <c>error</c>); 0 until then.</summary>
    public long FinalAt { get; set; }

    /// <summary>The first final event's <c>status</c>.</summary>
    public string? Status { get; set; }

    /// <summary>The first final event's <c>error.code</c>, if any.</summary>
    public string? ErrorCode { get; set; }

    /// <summary>The result's <c>executed_on</c> (local | relay).</summary>
    public string? ExecutedOn { get; set; }

    /// <summary>Final events received for this id (1 is right; an outcome may be re-published byte-identically after a crash).</summary>
    public int Finals { get; set; }

    /// <summary>End-to-end latency in ms (publish to the final event at the client), or NaN without a final.</summary>
    public double LatencyMs => FinalAt == 0 ? double.NaN : Stopwatch.GetElapsedTime(PublishedAt, FinalAt).TotalMilliseconds;
}

/// <summary>
/// The device side of the benchmark: one MQTT 5 client (MQTTnet) that publishes jobs at QoS 1 to the pool topic with
/// <c>reply_to</c> = <c>bench/replies/{run}</c> and records every event it gets back (DESIGN.md §3).
/// </summary>
internal sealed class LoadClient : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly ConcurrentDictionary<string, JobTrace> _jobs = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private int _finalsSeen;

    private LoadClient(IMqttClient client)
    {
        _client = client;
        _client.ApplicationMessageReceivedAsync += e =>
        {
            OnEvent(e.ApplicationMessage.Payload);
            return Task.CompletedTask;
        };
    }

    /// <summary>Distinct jobs with a final event so far.</summary>
    public int FinalsSeen => Volatile.Read(ref _finalsSeen);

    public IReadOnlyCollection<JobTrace> Jobs => (IReadOnlyCollection<JobTrace>)_jobs.Values;

    public static async Task<LoadClient> ConnectAsync(int port)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", port)
            .WithClientId("edgenode-bench-" + Guid.NewGuid().ToString("N")[..8])
            .WithCleanStart(true)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithTimeout(TimeSpan.FromSeconds(10))
            .Build();
        await client.ConnectAsync(options);
        var load = new LoadClient(client);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(f => f.WithTopic("bench/replies/#").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce))
            .Build());
        return load;
    }

    /// <summary>Forgets the traces of the previous run.</summary>
    public void Reset()
    {
        lock (_gate)
        {
            _jobs.Clear();
            _finalsSeen = 0;
        }
    }

    /// <summary>Publishes one job (QoS 1; completes on the broker's PUBACK) and starts its trace.</summary>
    public Task PublishAsync(string id, byte[] payload)
    {
        _jobs[id] = new JobTrace(id, Stopwatch.GetTimestamp());
        var message = new MqttApplicationMessageBuilder()
            .WithTopic("edgenode/jobs")
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        return _client.PublishAsync(message);
    }

    private void OnEvent(ReadOnlySequence<byte> payload)
    {
        var now = Stopwatch.GetTimestamp();
        using var doc = JsonDocument.Parse(payload);
        var root = doc.RootElement;
        var type = root.GetProperty("type").GetString();
        var id = root.TryGetProperty("id", out var idElement) ? idElement.GetString() : null;
        if (id is null || !_jobs.TryGetValue(id, out var trace))
        {
            return;
        }

        lock (_gate)
        {
            if (type == "accepted")
            {
                trace.Route = root.TryGetProperty("route", out var route) ? route.GetString() : null;
                return;
            }

            if (type is not ("result" or "error"))
            {
                return;
            }

            trace.Finals++;
            if (trace.Finals > 1)
            {
                return;
            }

            trace.FinalAt = now;
            trace.Status = root.TryGetProperty("status", out var status) ? status.GetString() : null;
            trace.ExecutedOn = root.TryGetProperty("executed_on", out var on) ? on.GetString() : null;
            trace.ErrorCode = root.TryGetProperty("error", out var error) && error.TryGetProperty("code", out var code) ? code.GetString() : null;
            _finalsSeen++;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync(new MqttClientDisconnectOptions());
        }

        _client.Dispose();
    }
}
