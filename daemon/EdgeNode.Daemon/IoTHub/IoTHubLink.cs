using System.Buffers;
using System.Collections.Concurrent;
using System.Text.Json;
using System.Threading.Channels;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Ingest;
using EdgeNode.Daemon.Mqtt;
using EdgeNode.Daemon.Outbox;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>A twin response: <c>$iothub/twin/res/{Status}/?$rid=..[&amp;$version=..]</c> and its body.</summary>
internal sealed record TwinResponse(int Status, IReadOnlyDictionary<string, string> Query, byte[] Body);

/// <summary>Something the management loop must handle, in arrival order.</summary>
internal abstract record HubControl
{
    /// <summary>The link (re)connected: GET the twin (desired updates are only sent while connected).</summary>
    public sealed record Connected : HubControl;

    /// <summary>A desired-properties patch, <c>$iothub/twin/PATCH/properties/desired/?$version=..</c>.</summary>
    public sealed record DesiredPatch(byte[] Body) : HubControl;

    /// <summary>A direct method call, <c>$iothub/methods/POST/{Name}/?$rid={Rid}</c>.</summary>
    public sealed record Method(string Name, string Rid, byte[] Body) : HubControl;
}

/// <summary>
/// The IoT Hub device link (DESIGN.md §7; "Communicate with an IoT hub using the MQTT protocol"): one MQTTnet client
/// speaking MQTT 3.1.1 over TLS on 8883 (or WebSockets on 443, path <c>/$iothub/websocket</c>), ClientId = device id,
/// user name <c>{host}/{deviceId}/?api-version=2021-04-12</c>, password a SAS token (<see cref="IoTHubConnectionString.CreateToken"/>) valid for
/// <c>IoTHub:TokenTtlSeconds</c> and renewed by reconnecting at 80% of it, clean session off so C2D messages wait
/// for us. Kept connected by an <see cref="MqttLinkSupervisor"/> (the same loop as the broker link): jittered
/// exponential backoff (throttled CONNACKs and forced disconnects are retried the same way, never in a tight loop), a
/// ping watchdog, and the token renewal reconnect. At most one connection.
/// C2D messages go to the ingest pipeline (<see cref="IInboundJobSource"/>) and are acknowledged after commit;
/// job events of C2D jobs come back from the outbox (<see cref="IOutboxRoute"/>) and leave as D2C messages.
/// The SAS key and tokens are never logged.
/// </summary>
internal sealed class IoTHubLink : BackgroundService, IInboundJobSource, IOutboxRoute
{
    /// <summary>Largest D2C payload we send in one message (IoT Hub's limit is 256 KB including properties).</summary>
    public const int MaxD2cPayloadBytes = 240 * 1024;

    private readonly IoTHubOptions _options;
    private readonly IoTHubConnectionString _identity;
    private readonly NodeSignals _signals;
    private readonly TimeProvider _time;
    private readonly ILogger<IoTHubLink> _logger;
    private readonly IMqttClient _client;
    private readonly Channel<InboundMessage> _inbound = Channel.CreateBounded<InboundMessage>(new BoundedChannelOptions(1000) { SingleWriter = true });
    private readonly Channel<HubControl> _control = Channel.CreateUnbounded<HubControl>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });
    private readonly ConcurrentDictionary<string, TaskCompletionSource<TwinResponse>> _pending = new();
    private readonly MqttLinkSupervisor _supervisor;
    private long _generation;
    private long _rid;
    private DateTimeOffset _renewAt = DateTimeOffset.MaxValue;
    private volatile bool _stopping;

    public IoTHubLink(IOptions<IoTHubOptions> options, NodeSignals signals, TimeProvider time, ILogger<IoTHubLink> logger)
    {
        _options = options.Value;
        _identity = _options.Identity();
        Topics = new IoTHubTopics(_identity.DeviceId);
        _signals = signals;
        _time = time;
        _logger = logger;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
        _supervisor = new MqttLinkSupervisor
        {
            Client = _client,
            Time = time,
            ConnectOnce = ConnectOnceAsync,
            KeepAlive = TimeSpan.FromSeconds(_options.KeepAliveSeconds),
            InitialBackoff = TimeSpan.FromMilliseconds(_options.InitialBackoffMilliseconds),
            MaxBackoff = TimeSpan.FromSeconds(_options.MaxBackoffSeconds),
            OnConnectRetry = (reason, delay) => IoTHubLog.ConnectFailed(_logger, _identity.HostName, _options.EffectivePort, reason, delay.TotalMilliseconds),
            OnPingFailed = () => IoTHubLog.PingFailed(_logger),

            // No in-band token refresh in IoT Hub's MQTT: reconnect with a fresh token before this one expires.
            RenewAt = () => _renewAt,
            OnRenew = () => IoTHubLog.RenewingToken(_logger),
        };
        _client.DisconnectedAsync += e =>
        {
            if (!_stopping)
            {
                IoTHubLog.Disconnected(_logger, e.Reason.ToString());
            }

            foreach (var pending in _pending.Values)
            {
                pending.TrySetException(new IOException("the IoT Hub link went down"));
            }

            _supervisor.Wake();
            return Task.CompletedTask;
        };
    }

    public IoTHubTopics Topics { get; }

    public string DeviceId => _identity.DeviceId;

    public bool IsConnected => _client.IsConnected;

    /// <summary>Successful connects so far.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>C2D job messages in arrival order (<see cref="IInboundJobSource"/>).</summary>
    public ChannelReader<InboundMessage> Inbound => _inbound.Reader;

    /// <summary>Connect notices, desired patches and method calls for the management loop.</summary>
    public ChannelReader<HubControl> Control => _control.Reader;

    public string ReplyTopic(string jobId) => IoTHubTopics.D2cReplyPrefix + jobId;

    public async Task AcknowledgeAsync(InboundMessage message, CancellationToken cancellationToken)
    {
        if (message.ConnectionGeneration != Generation || !_client.IsConnected)
        {
            return; // the hub redelivers it on the next connection; the job id makes the repeat a duplicate
        }

        await message.Args.AcknowledgeAsync(cancellationToken);
    }

    public bool Handles(string topic) => topic.StartsWith(IoTHubTopics.D2cReplyPrefix, StringComparison.Ordinal);

    /// <summary>
    /// Sends a job event of a C2D job as D2C on <c>devices/{id}/messages/events/jobId=..&amp;type=..&amp;$.ct=application%2Fjson&amp;$.ce=utf-8</c>.
    /// Events over <see cref="MaxD2cPayloadBytes"/> are split into chunks with properties <c>chunk</c> (0-based) and
    /// <c>chunks</c>; the receiver concatenates the payloads in chunk order.
    /// </summary>
    /// <exception cref="IOException">The link is down or the hub refused the message.</exception>
    public async Task PublishAsync(string topic, byte[] payload, CancellationToken cancellationToken)
    {
        var jobId = topic[IoTHubTopics.D2cReplyPrefix.Length..];
        var type = EventType(payload);
        if (payload.Length <= MaxD2cPayloadBytes)
        {
            await SendEventAsync([new("jobId", jobId), new("type", type)], payload, cancellationToken);
            return;
        }

        var chunks = (payload.Length + MaxD2cPayloadBytes - 1) / MaxD2cPayloadBytes;
        for (var i = 0; i < chunks; i++)
        {
            var part = payload.AsSpan(i * MaxD2cPayloadBytes, Math.Min(MaxD2cPayloadBytes, payload.Length - (i * MaxD2cPayloadBytes))).ToArray();
            await SendEventAsync(
                [new("jobId", jobId), new("type", type), new("chunk", i.ToString(System.Globalization.CultureInfo.InvariantCulture)), new("chunks", chunks.ToString(System.Globalization.CultureInfo.InvariantCulture))],
                part, cancellationToken);
        }
    }

    /// <summary>Sends one D2C message at QoS 1 with the given application properties.</summary>
    /// <exception cref="IOException">The link is down or the hub refused the message.</exception>
    public async Task SendEventAsync(IEnumerable<KeyValuePair<string, string>> properties, byte[] payload, CancellationToken cancellationToken)
    {
        await PublishRawAsync(Topics.Events(properties), payload, MqttQualityOfServiceLevel.AtLeastOnce, cancellationToken);
    }

    /// <summary>
    /// Sends a twin request (GET or reported PATCH; QoS 0) and waits for its <c>$iothub/twin/res/{status}</c> response.
    /// </summary>
    /// <param name="topicForRid">Builds the request topic from the request id.</param>
    /// <param name="body">Request body (empty for GET, the JSON patch for reported properties).</param>
    /// <param name="timeout">How long to wait for the response.</param>
    /// <param name="cancellationToken">Stops the wait.</param>
    /// <exception cref="IOException">The link is down or went down meanwhile.</exception>
    /// <exception cref="TimeoutException">No response within <paramref name="timeout"/>.</exception>
    public async Task<TwinResponse> TwinRequestAsync(Func<string, string> topicForRid, byte[] body, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var rid = Interlocked.Increment(ref _rid).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var done = new TaskCompletionSource<TwinResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[rid] = done;
        try
        {
            await PublishRawAsync(topicForRid(rid), body, MqttQualityOfServiceLevel.AtMostOnce, cancellationToken);
            return await done.Task.WaitAsync(timeout, _time, cancellationToken);
        }
        finally
        {
            _pending.TryRemove(rid, out _);
        }
    }

    /// <summary>Answers a direct method on <c>$iothub/methods/res/{status}/?$rid={rid}</c>.</summary>
    /// <exception cref="IOException">The link is down.</exception>
    public Task RespondAsync(string rid, int status, byte[] body, CancellationToken cancellationToken) =>
        PublishRawAsync(IoTHubTopics.MethodResponse(status, rid), body, MqttQualityOfServiceLevel.AtMostOnce, cancellationToken);

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => _supervisor.RunAsync(stoppingToken);

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        await base.StopAsync(cancellationToken);
        if (_client.IsConnected)
        {
            await _supervisor.DisconnectQuietlyAsync();
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    private async Task PublishRawAsync(string topic, byte[] payload, MqttQualityOfServiceLevel qos, CancellationToken cancellationToken)
    {
        if (!_client.IsConnected)
        {
            throw new IOException("the IoT Hub link is down");
        }

        var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(qos).Build();
        MqttClientPublishResult result;
        try
        {
            result = await _client.PublishAsync(message, cancellationToken);
        }
        catch (MQTTnet.Exceptions.MqttCommunicationException ex)
        {
            throw new IOException("IoT Hub publish failed: " + ex.Message, ex);
        }

        if (!result.IsSuccess)
        {
            throw new IOException("IoT Hub refused the message: " + result.ReasonCode);
        }
    }

    private async ValueTask ConnectOnceAsync(CancellationToken cancellationToken)
    {
        if (_client.IsConnected)
        {
            return;
        }

        var host = _identity.HostName;
        var port = _options.EffectivePort;
        var builder = new MqttClientOptionsBuilder()
            .WithClientId(_identity.DeviceId)
            .WithProtocolVersion(MqttProtocolVersion.V311)
            .WithCleanSession(false)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(_options.KeepAliveSeconds))
            .WithTimeout(TimeSpan.FromSeconds(30))
            .WithTlsOptions(Tls(host));
        if (_options.UseWebSockets)
        {
            builder.WithWebSocketServer(o => o.WithUri("wss://" + host + ":" + port.ToString(System.Globalization.CultureInfo.InvariantCulture) + "/$iothub/websocket"));
        }
        else
        {
            builder.WithTcpServer(host, port);
        }

        DateTimeOffset? expiry = null;
        if (_identity.SharedAccessKey is not null)
        {
            var issued = _time.GetUtcNow();
            expiry = issued.AddSeconds(_options.TokenTtlSeconds);
            var token = _identity.CreateToken(expiry.Value.ToUnixTimeSeconds());
            builder.WithCredentials(_identity.UserName, token);
            _renewAt = issued.AddSeconds(_options.TokenTtlSeconds * 0.8);
        }
        else
        {
            builder.WithCredentials(_identity.UserName, (string?)null);
            _renewAt = DateTimeOffset.MaxValue;
        }

        MqttClientConnectResult result;
        try
        {
            result = await _client.ConnectAsync(builder.Build(), cancellationToken);
        }
        catch (MQTTnet.Exceptions.MqttCommunicationException ex)
        {
            throw new IOException(ex.Message, ex);
        }

        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            // MQTTnet does not throw on a refused CONNACK (notes/mqttnet.md); IoT Hub answers "server unavailable" when throttling.
            await _supervisor.DisconnectQuietlyAsync();
            throw new IOException("IoT Hub refused the connection: " + result.ResultCode);
        }

        Interlocked.Increment(ref _generation);
        foreach (var topic in new[] { IoTHubTopics.TwinResponses, IoTHubTopics.DesiredPatches, IoTHubTopics.MethodRequests, Topics.CloudToDevice })
        {
            // At most 5 subscriptions per device; QoS 1 so C2D messages wait in our session while we are away.
            var qos = topic == Topics.CloudToDevice ? MqttQualityOfServiceLevel.AtLeastOnce : MqttQualityOfServiceLevel.AtMostOnce;
            var sub = await _client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(f => f.WithTopic(topic).WithQualityOfServiceLevel(qos)).Build(), cancellationToken);
            var code = sub.Items.First().ResultCode;
            if (code is not (MqttClientSubscribeResultCode.GrantedQoS0 or MqttClientSubscribeResultCode.GrantedQoS1))
            {
                await _supervisor.DisconnectQuietlyAsync();
                throw new IOException("IoT Hub refused the subscription to " + topic + ": " + code);
            }
        }

        IoTHubLog.Connected(_logger, host, port, _identity.DeviceId, _options.UseWebSockets ? "WebSockets" : "TCP", expiry?.ToString("O", System.Globalization.CultureInfo.InvariantCulture) ?? "X.509");
        _control.Writer.TryWrite(new HubControl.Connected());
        _signals.OutboxChanged.Set(); // D2C events that waited for the link
    }

    /// <summary>
    /// TLS 1.2/1.3 to the hub: the server certificate is checked against <c>IoTHub:CaFile</c> when set (through a
    /// validation handler, so that the WebSocket transport checks it too), else against the system store;
    /// <c>IoTHub:ClientCertificateFile</c> (+ <c>ClientKeyFile</c>) is the X.509 device identity.
    /// </summary>
    private MqttClientTlsOptions Tls(string host)
    {
        var builder = new MqttClientTlsOptionsBuilder().UseTls().WithTargetHost(host)
            .WithSslProtocols(System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13);
        if (!string.IsNullOrWhiteSpace(_options.CaFile))
        {
            var roots = BrokerTls.LoadRoots(_options.CaFile, "IoTHub:CaFile");
            builder.WithCertificateValidationHandler(e => BrokerTls.ValidateWithRoots(e.Certificate, e.SslPolicyErrors, roots));
        }

        if (!string.IsNullOrWhiteSpace(_options.ClientCertificateFile))
        {
            builder.WithClientCertificates([BrokerTls.LoadClientCertificate(_options.ClientCertificateFile, _options.ClientKeyFile, "IoTHub:ClientCertificateFile")]);
        }

        return builder.Build();
    }

    private Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        var topic = e.ApplicationMessage.Topic;
        if (topic.StartsWith(Topics.CloudToDevicePrefix, StringComparison.Ordinal))
        {
            // Acknowledged only after the ingest loop committed the job (within IoT Hub's 60 s lock).
            e.AutoAcknowledge = false;
            return _inbound.Writer.WriteAsync(new InboundMessage(e, Generation, _time.GetUtcNow(), this)).AsTask();
        }

        var (segments, query) = IoTHubTopics.Split(topic);
        var body = e.ApplicationMessage.Payload.ToArray();
        if (segments is ["$iothub", "twin", "res", var status] && query.TryGetValue("$rid", out var rid))
        {
            if (_pending.TryGetValue(rid, out var done) && int.TryParse(status, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code))
            {
                done.TrySetResult(new TwinResponse(code, query, body));
            }
        }
        else if (segments is ["$iothub", "twin", "PATCH", "properties", "desired", ..])
        {
            _control.Writer.TryWrite(new HubControl.DesiredPatch(body));
        }
        else if (segments is ["$iothub", "methods", "POST", var name, ..] && query.TryGetValue("$rid", out var methodRid))
        {
            _control.Writer.TryWrite(new HubControl.Method(name, methodRid, body));
        }
        else
        {
            IoTHubLog.UnexpectedTopic(_logger, topic);
        }

        return Task.CompletedTask;
    }

    private static string EventType(byte[] payload)
    {
        try
        {
            using var doc = JsonDocument.Parse(payload);
            return doc.RootElement.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "event";
        }
        catch (JsonException)
        {
            return "event";
        }
    }
}
