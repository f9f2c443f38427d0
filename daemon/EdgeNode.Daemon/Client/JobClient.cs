using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using MQTTnet;
using MQTTnet.Protocol;

namespace EdgeNode.Daemon.Client;

/// <summary>One event received on a job's reply topic (DESIGN.md §3), with its raw JSON.</summary>
internal sealed record JobEvent(string Type, string Id, string? Status, string Json)
{
    /// <summary>True for the events that end a job: <c>result</c> and <c>error</c>.</summary>
    public bool IsFinal => Type is "result" or "error";

    public static JobEvent Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        return new JobEvent(
            root.GetProperty("type").GetString() ?? "",
            root.TryGetProperty("id", out var id) ? id.GetString() ?? "" : "",
            root.TryGetProperty("status", out var status) ? status.GetString() : null,
            json);
    }
}

/// <summary>
/// A device-side MQTT 5 client for the job contract, used by <c>edgenode submit</c>, <c>edgenode demo</c>
/// and the tests: it publishes jobs at QoS 1 with a Response Topic and Correlation Data (MQTT 5
/// §4.10) and collects each job's events from its private reply topic, matched by correlation data,
/// so that even a payload without a usable id gets its answer.
/// </summary>
internal sealed class JobClient : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly string _replyTopic;
    private readonly string _topicPrefix;
    private readonly ConcurrentDictionary<string, Channel<JobEvent>> _pending = new();
    private long _next;

    private JobClient(IMqttClient client, string replyTopic, string topicPrefix)
    {
        _client = client;
        _replyTopic = replyTopic;
        _topicPrefix = topicPrefix;
        _client.ApplicationMessageReceivedAsync += e =>
        {
            var correlation = e.ApplicationMessage.CorrelationData is { Length: > 0 } c ? Encoding.UTF8.GetString(c) : null;
            if (correlation is not null && _pending.TryGetValue(correlation, out var channel))
            {
                var json = Encoding.UTF8.GetString(e.ApplicationMessage.Payload);
                channel.Writer.TryWrite(JobEvent.Parse(json));
            }

            return Task.CompletedTask;
        };
    }

    /// <summary>Connects to the broker and subscribes to a reply topic private to this client.</summary>
    /// <exception cref="IOException">When the broker refuses the connection.</exception>
    public static async Task<JobClient> ConnectAsync(string host, int port, string topicPrefix = "edgenode", CancellationToken cancellationToken = default)
    {
        var clientId = "edgenode-cli-" + Guid.NewGuid().ToString("N")[..12];
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(host, port)
            .WithClientId(clientId)
            .WithCleanStart(true)
            .WithTimeout(TimeSpan.FromSeconds(10))
            .Build();
        var result = await client.ConnectAsync(options, cancellationToken);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            client.Dispose();
            throw new IOException($"broker {host}:{port} refused the connection: {result.ResultCode}");
        }

        var replyTopic = topicPrefix + "/clients/" + clientId + "/replies";
        var jobClient = new JobClient(client, replyTopic, topicPrefix);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(f => f.WithTopic(replyTopic).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce))
            .Build(), cancellationToken);
        return jobClient;
    }

    /// <summary>
    /// Publishes a job payload (QoS 1) to the pool topic (or <paramref name="topic"/>) and yields its events
    /// until the final one (<c>result</c> or <c>error</c>).
    /// </summary>
    /// <exception cref="TimeoutException">When no final event arrives within <paramref name="timeout"/>.</exception>
    public async IAsyncEnumerable<JobEvent> SubmitAsync(byte[] payload, TimeSpan timeout, string? topic = null,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var correlation = "c" + Interlocked.Increment(ref _next).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var channel = Channel.CreateUnbounded<JobEvent>();
        _pending[correlation] = channel;
        try
        {
            var message = new MqttApplicationMessageBuilder()
                .WithTopic(topic ?? _topicPrefix + "/jobs")
                .WithPayload(payload)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
                .WithResponseTopic(_replyTopic)
                .WithCorrelationData(Encoding.UTF8.GetBytes(correlation))
                .Build();
            await _client.PublishAsync(message, cancellationToken);

            using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            cts.CancelAfter(timeout);
            while (true)
            {
                JobEvent jobEvent;
                try
                {
                    jobEvent = await channel.Reader.ReadAsync(cts.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new TimeoutException($"no final event within {timeout.TotalSeconds:F0} s");
                }

                yield return jobEvent;
                if (jobEvent.IsFinal)
                {
                    yield break;
                }
            }
        }
        finally
        {
            _pending.TryRemove(correlation, out _);
        }
    }

    /// <summary>Asks the node to cancel a job: an empty QoS 1 message on <c>{prefix}/jobs/{jobId}/cancel</c> (DESIGN.md §3).</summary>
    public async Task CancelAsync(string jobId, CancellationToken cancellationToken = default)
    {
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(_topicPrefix + "/jobs/" + jobId + "/cancel")
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build();
        await _client.PublishAsync(message, cancellationToken);
    }

    /// <summary>Submits and collects all events of the job until the final one.</summary>
    public async Task<IReadOnlyList<JobEvent>> RunAsync(byte[] payload, TimeSpan timeout, string? topic = null, CancellationToken cancellationToken = default)
    {
        var events = new List<JobEvent>();
        await foreach (var e in SubmitAsync(payload, timeout, topic, cancellationToken))
        {
            events.Add(e);
        }

        return events;
    }

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync(new MqttClientDisconnectOptions(), CancellationToken.None);
        }

        _client.Dispose();
    }
}
