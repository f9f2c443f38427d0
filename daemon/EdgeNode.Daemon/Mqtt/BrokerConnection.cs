using System.Threading.Channels;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>
/// The broker answered a QoS 1 PUBLISH with a failure reason code (MQTT 5 §3.4.2.1). NotAuthorized, TopicNameInvalid
/// and PayloadFormatInvalid are <see cref="Permanent"/>: publishing the same message again cannot succeed.
/// </summary>
internal sealed class PublishRefusedException : IOException
{
    public PublishRefusedException(string topic, MqttClientPublishReasonCode code, string? reason)
        : base($"broker refused publish to {topic}: {code} {reason}")
    {
        Code = code;
    }

    public PublishRefusedException()
    {
    }

    public PublishRefusedException(string message)
        : base(message)
    {
    }

    public PublishRefusedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public MqttClientPublishReasonCode Code { get; }

    public bool Permanent => Code is MqttClientPublishReasonCode.NotAuthorized or MqttClientPublishReasonCode.TopicNameInvalid
        or MqttClientPublishReasonCode.PayloadFormatInvalid;
}

/// <summary>A job message as received, not yet acknowledged (PUBACK is sent only after the commit, DESIGN.md §4.1).</summary>
/// <param name="Args">MQTTnet's event args; <see cref="MqttApplicationMessageReceivedEventArgs.AcknowledgeAsync"/> sends the PUBACK.</param>
/// <param name="ConnectionGeneration">Which connection delivered it: a PUBACK is only sent on that same connection
/// (after a reconnect the broker redelivers unacknowledged messages and the job id makes the repeat harmless).</param>
/// <param name="ReceivedAt">Arrival time from the injected <see cref="TimeProvider"/>.</param>
/// <param name="Source">The link it came from when not the data-plane broker (IoT Hub C2D); null for the broker.</param>
internal sealed record InboundMessage(MqttApplicationMessageReceivedEventArgs Args, long ConnectionGeneration, DateTimeOffset ReceivedAt, Ingest.IInboundJobSource? Source = null);

/// <summary>
/// The data-plane MQTT client (MQTTnet 5): connects with a persistent session, subscribes to the pool
/// topic (shared subscription when the broker offers it) and the node topic at QoS 1 with manual
/// acknowledgement, hands received messages to the ingest loop through a bounded channel, and is kept
/// connected by an <see cref="MqttLinkSupervisor"/> (jittered exponential backoff, ping watchdog), because
/// MQTTnet 5 has no managed client and its disconnect event can be missed (notes/mqttnet.md).
/// </summary>
internal sealed class BrokerConnection : BackgroundService
{
    private readonly MqttOptions _options;
    private readonly NodeOptions _node;
    private readonly NodeState _state;
    private readonly TimeProvider _time;
    private readonly ILogger<BrokerConnection> _logger;
    private readonly IMqttClient _client;
    private readonly Channel<InboundMessage> _inbound;
    private readonly MqttLinkSupervisor _supervisor;
    private readonly NodeMetrics _metrics;
    private readonly BufferedSocketStreamProvider _streams;
    private volatile BufferedSocketStream? _stream;
    private long _generation;
    private volatile bool _stopping;

    public BrokerConnection(IOptions<MqttOptions> options, IOptions<NodeOptions> node, NodeState state, NodeMetrics metrics, TimeProvider time, ILogger<BrokerConnection> logger)
    {
        _metrics = metrics;
        _options = options.Value;
        _node = node.Value;
        _state = state;
        _time = time;
        _logger = logger;
        Topics = new Topics(_options.TopicPrefix, _node.Id);
        _inbound = Channel.CreateBounded<InboundMessage>(new BoundedChannelOptions(10_000) { SingleReader = true, SingleWriter = true });
        _streams = new BufferedSocketStreamProvider(coalescePackets: !_options.UseTls, connected: stream => _stream = stream);
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += OnMessageAsync;
        _supervisor = new MqttLinkSupervisor
        {
            Client = _client,
            Time = time,
            ConnectOnce = ConnectOnceAsync,
            KeepAlive = TimeSpan.FromSeconds(_options.KeepAliveSeconds),
            InitialBackoff = TimeSpan.FromMilliseconds(250),
            MaxBackoff = TimeSpan.FromSeconds(30),
            OnConnectRetry = (reason, _) => Log.ConnectFailed(_logger, Host, Port, reason),
            OnPingFailed = () =>
            {
                Log.PingFailed(_logger);
                _state.BrokerConnected = false;
            },
            OnLinkLost = () => ConnectionChanged?.Invoke(false),
        };
        _client.DisconnectedAsync += e =>
        {
            _state.BrokerConnected = false;
            if (!_stopping)
            {
                Log.Disconnected(_logger, e.Reason.ToString());
            }

            _supervisor.Wake();
            return Task.CompletedTask;
        };
    }

    public Topics Topics { get; }

    /// <summary>Received job messages, in arrival order, awaiting commit and PUBACK.</summary>
    public ChannelReader<InboundMessage> Inbound => _inbound.Reader;

    /// <summary>Set whenever the link goes up or down.</summary>
    public event Action<bool>? ConnectionChanged;

    public bool IsConnected => _client.IsConnected;

    /// <summary>
    /// How many QoS 1 PUBLISHes the broker accepts unacknowledged on the current connection: its MQTT 5 Receive Maximum
    /// from the CONNACK (MQTT 5 §3.2.2.3.3), else 65,535. The outbox keeps at most this many in flight.
    /// </summary>
    public int ReceiveMaximum { get; private set; } = ushort.MaxValue;

    /// <summary>The connection generation; increases with every successful connect.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    private string Host => _options.UsesEmbeddedBroker ? "127.0.0.1" : _options.Host!;

    private int Port => _options.UsesEmbeddedBroker ? _options.Embedded.Port : _options.Port;

    /// <summary>Publishes one message at QoS 1 and waits for the broker's PUBACK.</summary>
    /// <exception cref="MQTTnet.Exceptions.MqttClientNotConnectedException">When the link is down.</exception>
    public async Task PublishAsync(string topic, byte[] payload, byte[]? correlationData, bool retain, CancellationToken cancellationToken)
    {
        var builder = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(payload)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag(retain);
        if (_options.ProtocolVersion == 5)
        {
            // MQTT 5 properties; MQTTnet refuses them on a 3.1.1 link.
            builder.WithContentType("application/json");
            if (correlationData is { Length: > 0 })
            {
                builder.WithCorrelationData(correlationData);
            }
        }

        var result = await _client.PublishAsync(builder.Build(), cancellationToken);
        if (!result.IsSuccess && result.ReasonCode != MqttClientPublishReasonCode.NoMatchingSubscribers)
        {
            throw new PublishRefusedException(topic, result.ReasonCode, result.ReasonString);
        }
    }

    /// <summary>
    /// Holds what is written to the broker until the returned scope is disposed, then sends it in one <c>send</c>: for the
    /// PUBACKs of one ingest batch (<see cref="BufferedSocketStream.Cork"/>). Only for writes nothing inside the scope
    /// waits an answer to (a PUBACK, not a QoS 1 PUBLISH).
    /// </summary>
    public WriteBatch BatchWrites()
    {
        var stream = _stream;
        stream?.Cork();
        return new WriteBatch(stream);
    }

    /// <summary>Sends the PUBACK of a committed message, if it came on the current connection.</summary>
    public async Task AcknowledgeAsync(InboundMessage message, CancellationToken cancellationToken)
    {
        if (message.ConnectionGeneration != Generation || !_client.IsConnected)
        {
            return; // the broker redelivers it on the new connection; its id makes the repeat a duplicate
        }

        await message.Args.AcknowledgeAsync(cancellationToken);
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => _supervisor.RunAsync(stoppingToken);

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        await base.StopAsync(cancellationToken);
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), CancellationToken.None);
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    private async ValueTask ConnectOnceAsync(CancellationToken cancellationToken)
    {
        var clientId = string.IsNullOrWhiteSpace(_options.ClientId) ? "edgenode-" + _node.Id : _options.ClientId;
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer(Host, Port)
            .WithStreamProvider(_streams) // buffered reads, one send per packet or per batch of PUBACKs
            .WithClientId(clientId)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(_options.KeepAliveSeconds))
            .WithTimeout(TimeSpan.FromSeconds(10));
        if (_options.ProtocolVersion == 5)
        {
            builder.WithProtocolVersion(MqttProtocolVersion.V500)
                .WithCleanStart(false)
                .WithSessionExpiryInterval((uint)_options.SessionExpirySeconds);
        }
        else
        {
            builder.WithProtocolVersion(MqttProtocolVersion.V311).WithCleanSession(false);
        }

        if (!string.IsNullOrEmpty(_options.Username))
        {
            builder.WithCredentials(_options.Username, _options.Password);
        }

        if (_options.UseTls)
        {
            builder.WithTlsOptions(BrokerTls.Configure(_options));
        }

        // The Will marks the node offline (retained) if the link dies without a DISCONNECT (DESIGN.md §3).
        builder.WithWillTopic(Topics.Status)
            .WithWillPayload(StatusPublisher.OfflinePayload(_node.Id))
            .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithWillRetain(true);

        if (_client.IsConnected)
        {
            return;
        }

        var result = await _client.ConnectAsync(builder.Build(), cancellationToken);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            // MQTTnet does not throw on a refused CONNACK (notes/mqttnet.md).
            await _supervisor.DisconnectQuietlyAsync();
            if (result.ResultCode is MqttClientConnectResultCode.BadUserNameOrPassword or MqttClientConnectResultCode.NotAuthorized)
            {
                // An operator error, not a network blip: say so at error level, naming the keys (never the password).
                Log.CredentialsRefused(_logger, Host, Port, _options.Username ?? "", result.ResultCode.ToString());
            }

            var reason = string.IsNullOrEmpty(result.ReasonString) ? result.ResultCode.ToString() : $"{result.ResultCode} ({result.ReasonString})";
            throw new IOException("broker refused the connection: " + reason);
        }

        // MQTT 5 §3.2.2.3.3: absent (0 in MQTTnet) means 65,535; MQTT 3.1.1 has no such limit.
        ReceiveMaximum = _options.ProtocolVersion == 5 && result.ReceiveMaximum is > 0 and var max ? max : ushort.MaxValue;
        if (Interlocked.Increment(ref _generation) > 1)
        {
            _metrics.BrokerReconnects.Inc();
        }

        var version = _options.ProtocolVersion == 5 ? "5" : "3.1.1";
        Log.Connected(_logger, Host, Port, clientId, version, result.IsSessionPresent);
        await SubscribeAsync(result, cancellationToken);
        _state.BrokerConnected = true;
        ConnectionChanged?.Invoke(true);
    }

    private async Task SubscribeAsync(MqttClientConnectResult connect, CancellationToken cancellationToken)
    {
        // Subscribing again on a present session is harmless and also repairs a session the broker half-forgot.
        var pool = Topics.PoolJobs;
        if (_options.ProtocolVersion == 5 && connect.SharedSubscriptionAvailable)
        {
            var shared = await SubscribeOneAsync(Topics.SharedPoolJobs, cancellationToken);
            if (shared is MqttClientSubscribeResultCode.GrantedQoS1 or MqttClientSubscribeResultCode.GrantedQoS0 or MqttClientSubscribeResultCode.GrantedQoS2)
            {
                pool = null;
                Log.Subscribed(_logger, Topics.SharedPoolJobs);
            }
            else
            {
                Log.SharedSubscriptionRefused(_logger, Topics.SharedPoolJobs, shared.ToString());
            }
        }

        foreach (var topic in pool is null ? [Topics.NodeJobs, Topics.CancelFilter] : new[] { pool, Topics.NodeJobs, Topics.CancelFilter })
        {
            var code = await SubscribeOneAsync(topic, cancellationToken);
            if (code is not (MqttClientSubscribeResultCode.GrantedQoS1 or MqttClientSubscribeResultCode.GrantedQoS0 or MqttClientSubscribeResultCode.GrantedQoS2))
            {
                throw new IOException($"broker refused subscription to {topic}: {code}");
            }

            Log.Subscribed(_logger, topic);
        }
    }

    private async Task<MqttClientSubscribeResultCode> SubscribeOneAsync(string topic, CancellationToken cancellationToken)
    {
        var subscribe = new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(f => f.WithTopic(topic).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce))
            .Build();
        var result = await _client.SubscribeAsync(subscribe, cancellationToken);
        return result.Items.First().ResultCode;
    }

    private Task OnMessageAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        // Keep the handler short (MQTTnet feeds handlers one at a time from an unbounded queue):
        // hand the message to the ingest loop, which commits and then acknowledges in arrival order.
        e.AutoAcknowledge = false;
        return _inbound.Writer.WriteAsync(new InboundMessage(e, Generation, _time.GetUtcNow())).AsTask();
    }
}

/// <summary>A <see cref="BrokerConnection.BatchWrites"/> scope: disposing it sends what was held.</summary>
internal readonly struct WriteBatch(BufferedSocketStream? stream) : IAsyncDisposable
{
    /// <summary>Sends the held writes. A broken or closed link is not an error here: MQTTnet reports it, and the
    /// broker redelivers the messages whose PUBACK did not leave (their ids make the repeats duplicates).</summary>
    public async ValueTask DisposeAsync()
    {
        if (stream is null)
        {
            return;
        }

        try
        {
            await stream.UncorkAsync();
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
        }
    }
}
