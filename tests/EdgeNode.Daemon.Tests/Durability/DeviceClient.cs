using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// A device on MQTT 5 with a persistent session (clean start off, session kept an hour) subscribed at QoS 1 to one
/// reply topic: it publishes jobs with that Response Topic and the job id as Correlation Data, and keeps every
/// event it receives, raw, so a test can check that repeats are byte-identical. While it runs it reconnects by
/// itself every 200 ms when the broker went away (tests that stop the broker rely on the broker-side session).
/// </summary>
internal sealed class DeviceClient : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly MqttClientOptions _options;
    private readonly ConcurrentDictionary<string, ConcurrentQueue<byte[]>> _finals = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _accepted = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _reconnectLoop;

    private DeviceClient(int port, string name, Action<MqttClientOptionsBuilder>? configure)
    {
        ReplyTopic = "devices/" + name + "/replies";
        _client = new MqttClientFactory().CreateMqttClient();
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", port)
            .WithClientId("device-" + name)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(false)
            .WithSessionExpiryInterval(3600)
            .WithTimeout(TimeSpan.FromSeconds(10));
        configure?.Invoke(builder);
        _options = builder.Build();
        _client.ApplicationMessageReceivedAsync += e =>
        {
            var payload = e.ApplicationMessage.Payload.ToArray();
            using (var doc = JsonDocument.Parse(payload))
            {
                var type = doc.RootElement.GetProperty("type").GetString();
                var id = doc.RootElement.GetProperty("id").GetString()!;
                if (type is "result" or "error")
                {
                    _finals.GetOrAdd(id, _ => new ConcurrentQueue<byte[]>()).Enqueue(payload);
                }
                else if (type == "accepted")
                {
                    _accepted.TryAdd(id, 0);
                    AcceptedInArrivalOrder.Enqueue(id);
                }
            }

            Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            return Task.CompletedTask;
        };
    }

    public string ReplyTopic { get; }

    public bool IsConnected => _client.IsConnected;

    /// <summary>Every final event (<c>result</c> or <c>error</c>) received, per job id, raw, in arrival order.</summary>
    public IReadOnlyDictionary<string, ConcurrentQueue<byte[]>> Finals => _finals;

    /// <summary>The id of every <c>accepted</c> event, repeats included, in the order they arrived.</summary>
    public ConcurrentQueue<string> AcceptedInArrivalOrder { get; } = new();

    /// <summary>
    /// Publishes jobs at QoS 1 without waiting for each PUBACK before the next PUBLISH (they go out in this order on
    /// the one connection), then waits for all PUBACKs: the node receives a burst, not one job at a time.
    /// </summary>
    public async Task PublishJobsAsync(IEnumerable<(string Id, string Json)> jobs, string topic = "edgenode/jobs")
    {
        var publishes = jobs.Select(job => _client.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(Encoding.UTF8.GetBytes(job.Json))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithResponseTopic(ReplyTopic)
            .WithCorrelationData(Encoding.UTF8.GetBytes(job.Id))
            .Build())).ToList();
        foreach (var result in await Task.WhenAll(publishes))
        {
            Assert.True(result.IsSuccess || result.ReasonCode == MqttClientPublishReasonCode.NoMatchingSubscribers, $"publish: {result.ReasonCode}");
        }
    }

    /// <summary>Ids whose <c>accepted</c> event arrived.</summary>
    public ICollection<string> Accepted => _accepted.Keys;

    /// <summary>Connects (persistent session), subscribes to the reply topic at QoS 1, and starts reconnecting by itself.</summary>
    public static async Task<DeviceClient> ConnectAsync(int port, string name, Action<MqttClientOptionsBuilder>? configure = null)
    {
        var device = new DeviceClient(port, name, configure);
        await device.ConnectOnceAsync(CancellationToken.None);
        device._reconnectLoop = device.ReconnectLoopAsync();
        return device;
    }

    /// <summary>Publishes one job at QoS 1 (waits for the broker's PUBACK) with this device's Response Topic and the id as Correlation Data.</summary>
    public async Task PublishJobAsync(string id, string json, string topic = "edgenode/jobs")
    {
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(Encoding.UTF8.GetBytes(json))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithResponseTopic(ReplyTopic)
            .WithCorrelationData(Encoding.UTF8.GetBytes(id))
            .Build();
        var result = await _client.PublishAsync(message);
        Assert.True(result.IsSuccess || result.ReasonCode == MqttClientPublishReasonCode.NoMatchingSubscribers, $"publish of {id}: {result.ReasonCode}");
    }

    /// <summary>The final event of a job as text (the first one received).</summary>
    public string FinalText(string id) => Encoding.UTF8.GetString(_finals[id].First());

    /// <summary>Waits (on received messages, not on a clock) until <paramref name="condition"/> holds.</summary>
    /// <exception cref="TimeoutException">With <paramref name="what"/> and how many finals arrived.</exception>
    public async Task WaitUntilAsync(Func<DeviceClient, bool> condition, string what, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            var changed = Volatile.Read(ref _changed).Task;
            if (condition(this))
            {
                return;
            }

            try
            {
                await changed.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"device: {what} did not happen within {timeout.TotalSeconds:F0} s ({_finals.Count} jobs with a final event, {_accepted.Count} accepted)");
            }
        }
    }

    /// <summary>Waits until every id in <paramref name="ids"/> has a final event.</summary>
    public Task WaitForFinalsAsync(IReadOnlyCollection<string> ids, TimeSpan timeout) =>
        WaitUntilAsync(d => ids.All(d.Finals.ContainsKey), $"a final event for each of {ids.Count} jobs", timeout);

    /// <summary>
    /// Asserts that every job has a final event and that all copies of it are byte-identical
    /// (DESIGN.md §4.2: a repeat after a crash is byte-identical), and returns the final event of each job.
    /// </summary>
    public Dictionary<string, byte[]> AssertOneFinalEach(IReadOnlyCollection<string> ids)
    {
        var finals = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var id in ids)
        {
            Assert.True(_finals.TryGetValue(id, out var copies), $"job {id} has no final event");
            var first = copies.First();
            foreach (var copy in copies)
            {
                Assert.True(first.AsSpan().SequenceEqual(copy), $"job {id}: two different final events:\n{Encoding.UTF8.GetString(first)}\n{Encoding.UTF8.GetString(copy)}");
            }

            finals[id] = first;
        }

        return finals;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_reconnectLoop is not null)
        {
            await _reconnectLoop;
        }

        try
        {
            if (_client.IsConnected)
            {
                await _client.DisconnectAsync();
            }
        }
        catch (Exception)
        {
            // Already gone.
        }

        _client.Dispose();
        _stop.Dispose();
    }

    private async Task ConnectOnceAsync(CancellationToken cancellationToken)
    {
        var connect = await _client.ConnectAsync(_options, cancellationToken);
        if (connect.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new IOException("device connect refused: " + connect.ResultCode);
        }

        if (!connect.IsSessionPresent)
        {
            await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(f => f.WithTopic(ReplyTopic).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce))
                .Build(), cancellationToken);
        }

        Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    private async Task ReconnectLoopAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(200));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                if (_client.IsConnected)
                {
                    continue;
                }

                try
                {
                    await ConnectOnceAsync(_stop.Token);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // The broker is still down; the next tick tries again.
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
