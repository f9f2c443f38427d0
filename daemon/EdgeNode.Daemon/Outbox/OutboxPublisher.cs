using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Mqtt;
using EdgeNode.Daemon.Queue;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Outbox;

/// <summary>
/// Drains the durable outbox to the broker in order (DESIGN.md §4.2): each event is published at QoS 1
/// and marked delivered only after the broker's PUBACK. While the link is down nothing is lost: the
/// entries wait in LiteDB and drain after the reconnect. After a crash an entry may be published again,
/// byte-identical, so consumers deduplicate by job id.
/// </summary>
internal sealed class OutboxPublisher : BackgroundService
{
    private const int BatchSize = 256;
    private readonly BrokerConnection _broker;
    private readonly StoreHost _storeHost;
    private readonly NodeSignals _signals;
    private readonly TimeProvider _time;
    private readonly ILogger<OutboxPublisher> _logger;
    private readonly Lock _deliveredGate = new();
    private readonly List<(long Seq, TaskCompletionSource Done)> _waiters = [];
    private long _deliveredThrough;

    private readonly IOutboxRoute[] _routes;

    public OutboxPublisher(BrokerConnection broker, StoreHost storeHost, NodeSignals signals, TimeProvider time, ILogger<OutboxPublisher> logger, IEnumerable<IOutboxRoute>? routes = null)
    {
        _routes = routes?.ToArray() ?? [];
        _broker = broker;
        _storeHost = storeHost;
        _signals = signals;
        _time = time;
        _logger = logger;
        _broker.ConnectionChanged += up =>
        {
            if (up)
            {
                _signals.OutboxChanged.Set();
            }
        };
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await _signals.OutboxChanged.WaitAsync(TimeSpan.FromSeconds(2), _time, stoppingToken);
                while (_broker.IsConnected && await DrainOnceAsync(stoppingToken) == BatchSize)
                {
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);

        // Flush what the last job produced, if the link is up; the rest waits in the store.
        if (_broker.IsConnected)
        {
            try
            {
                await DrainOnceAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.PublishFailed(_logger, "outbox", ex.Message);
            }
        }
    }

    /// <summary>A publish failure that no retry can fix (see <see cref="PublishRefusedException.Permanent"/>).</summary>
    private static bool IsUndeliverable(Exception ex) =>
        ex is PublishRefusedException { Permanent: true } or MQTTnet.Exceptions.MqttProtocolViolationException or ArgumentException;

    /// <summary>
    /// Completes once every outbox entry up to <paramref name="seq"/> has been published (used to send a job's
    /// <c>token</c> events only after its <c>accepted</c> event), or after <paramref name="timeout"/>.
    /// </summary>
    public async Task WaitDeliveredThroughAsync(long seq, TimeSpan timeout)
    {
        TaskCompletionSource done;
        lock (_deliveredGate)
        {
            if (_deliveredThrough >= seq)
            {
                return;
            }

            done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((seq, done));
        }

        _signals.OutboxChanged.Set();
        try
        {
            await done.Task.WaitAsync(timeout, _time);
        }
        catch (TimeoutException)
        {
            // The link is down or slow: token events are best effort and go out anyway.
        }
    }

    private void Delivered(long seq)
    {
        lock (_deliveredGate)
        {
            _deliveredThrough = Math.Max(_deliveredThrough, seq);
            _waiters.RemoveAll(w =>
            {
                if (w.Seq > _deliveredThrough)
                {
                    return false;
                }

                w.Done.TrySetResult();
                return true;
            });
        }
    }

    /// <summary>
    /// Publishes a best-effort event that is not in the outbox (a <c>token</c> event) on the link its topic belongs to:
    /// an <see cref="IOutboxRoute"/> that handles it (IoT Hub D2C for C2D jobs), else the broker at QoS 1.
    /// </summary>
    /// <exception cref="IOException">The link is down or refused the message.</exception>
    /// <exception cref="MQTTnet.Exceptions.MqttClientNotConnectedException">The broker link is down.</exception>
    public Task PublishLiveAsync(string topic, byte[] payload, byte[]? correlationData, CancellationToken cancellationToken) =>
        Array.Find(_routes, r => r.Handles(topic)) is { } route
            ? route.PublishAsync(topic, payload, cancellationToken)
            : _broker.PublishAsync(topic, payload, correlationData, retain: false, cancellationToken);

    /// <summary>Publishes up to one batch of undelivered entries; returns how many were delivered.</summary>
    private async Task<int> DrainOnceAsync(CancellationToken cancellationToken)
    {
        var lastWritten = _storeHost.Store.LastOutboxSeq; // read first: entries written later are not vouched for
        var entries = _storeHost.Store.ReadOutbox(BatchSize);
        var delivered = 0;
        HashSet<IOutboxRoute>? failedRoutes = null;
        foreach (var entry in entries)
        {
            var route = Array.Find(_routes, r => r.Handles(entry.Topic));
            if (route is not null)
            {
                // Another link (IoT Hub D2C): when it is down its entries wait, in order, without holding up the broker's.
                if (failedRoutes?.Contains(route) == true)
                {
                    continue;
                }

                try
                {
                    await route.PublishAsync(entry.Topic, entry.Payload, cancellationToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Log.PublishFailed(_logger, entry.Topic, ex.Message);
                    (failedRoutes ??= []).Add(route);
                    continue;
                }

                _storeHost.Store.MarkDelivered(entry.Seq);
                delivered++;
                Delivered(entry.Seq);
                continue;
            }

            try
            {
                await _broker.PublishAsync(entry.Topic, entry.Payload, entry.CorrelationData, retain: false, cancellationToken);
            }
            catch (Exception ex) when (IsUndeliverable(ex))
            {
                // The broker (or MQTT itself) will never take this message, e.g. a topic the node may not publish to:
                // retrying would block every event behind it forever. It is dropped with an error; the outcome stays
                // in the store for a resubmission of the same id.
                Log.Undeliverable(_logger, entry.JobId, entry.Topic, ex.Message);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.PublishFailed(_logger, entry.Topic, ex.Message);
                return -1; // stop in order; the next signal or tick retries from this entry
            }

            try
            {
                _storeHost.Store.MarkDelivered(entry.Seq);
            }
            catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
            {
                Log.PublishFailed(_logger, entry.Topic, "published, but the store could not mark it delivered (" + ex.Message + "); it may be published again");
                return -1;
            }

            delivered++;
            Delivered(entry.Seq);
        }

        if (entries.Count == 0)
        {
            Delivered(lastWritten); // nothing was pending: everything written before the read is out
        }

        return delivered;
    }
}

/// <summary>
/// Publishes outbox entries whose topic it claims on a link other than the data-plane broker (e.g. IoT Hub D2C for
/// jobs that came as C2D messages). Entries of one route are published in order; a failure leaves them for later.
/// </summary>
internal interface IOutboxRoute
{
    bool Handles(string topic);

    /// <summary>Publishes one event and returns once the link acknowledged it (QoS 1).</summary>
    /// <exception cref="IOException">The link is down or refused the message.</exception>
    Task PublishAsync(string topic, byte[] payload, CancellationToken cancellationToken);
}

/// <summary>Log messages of the outbox feature (event ids 500-599).</summary>
internal static partial class Log
{
    [LoggerMessage(500, LogLevel.Warning, "Publishing to {Topic} failed: {Reason}; the event stays in the outbox")]
    public static partial void PublishFailed(ILogger logger, string topic, string reason);

    [LoggerMessage(501, LogLevel.Error, "An event of job {JobId} can never be published to {Topic} ({Reason}); it is dropped so the events behind it flow")]
    public static partial void Undeliverable(ILogger logger, string jobId, string topic, string reason);
}
