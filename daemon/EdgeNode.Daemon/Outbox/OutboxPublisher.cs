using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Mqtt;
using EdgeNode.Daemon.Queue;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Outbox;

/// <summary>
/// Drains the durable outbox to the broker in order (DESIGN.md §4.2): each event is published at QoS 1
/// and marked delivered only after the broker's PUBACK (pipelined: several PUBLISHes in flight, PUBACKs taken in order,
/// marks written per batch). While the link is down nothing is lost: the
/// entries wait in LiteDB and drain after the reconnect. After a crash an entry may be published again,
/// byte-identical, so consumers deduplicate by job id.
/// </summary>
internal sealed class OutboxPublisher : BackgroundService
{
    private const int BatchSize = 256;

    /// <summary>Most QoS 1 PUBLISHes awaiting their PUBACK at once (further capped by the broker's Receive Maximum).</summary>
    private const int PublishWindow = 128;
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
            else
            {
                ReleaseWaiters(); // nothing will be delivered until the link is back: see WaitDeliveredThroughAsync
            }
        };
    }

    private static readonly TimeSpan StoreRetryDelay = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                if (!await _signals.OutboxChanged.WaitAsync(TimeSpan.FromSeconds(2), _time, stoppingToken))
                {
                    FlushDelivered(); // idle: write the deferred deletions of delivered entries
                }

                try
                {
                    while (_broker.IsConnected && await DrainOnceAsync(stoppingToken) == BatchSize)
                    {
                    }
                }
                catch (Exception ex) when (JobStore.IsStorageFault(ex))
                {
                    // Disk full or an I/O error while reading the outbox (or writing its deferred deletions): the
                    // entries stay in the store and go out once it works again (it reopens itself when space returns).
                    // Letting this end the service would stop the node with accepted jobs unanswered.
                    Log.PublishFailed(_logger, "outbox", "the job store is unavailable (" + ex.Message + "); retrying in 1 s");
                    await Task.Delay(StoreRetryDelay, _time, stoppingToken);
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

        FlushDelivered();
    }

    /// <summary>Writes the store's deferred deletions of delivered entries; an I/O error leaves them for later.</summary>
    private void FlushDelivered()
    {
        try
        {
            _storeHost.Store.FlushDelivered();
        }
        catch (Exception ex) when (ex is IOException or LiteDB.LiteException or ObjectDisposedException or InvalidOperationException)
        {
            Log.PublishFailed(_logger, "outbox", "the store could not delete delivered entries (" + ex.Message + "); they may be published again");
        }
    }

    /// <summary>A publish failure that no retry can fix (see <see cref="PublishRefusedException.Permanent"/>).</summary>
    private static bool IsUndeliverable(Exception ex) =>
        ex is PublishRefusedException { Permanent: true } or MQTTnet.Exceptions.MqttProtocolViolationException or ArgumentException;

    /// <summary>
    /// Completes once every outbox entry up to <paramref name="seq"/> has been published (used to send a job's
    /// <c>token</c> events only after its <c>accepted</c> event), or after <paramref name="timeout"/>, or at once while
    /// the broker link is down (or when it goes down): nothing is delivered then, and the executor must not wait for
    /// the broker (a streaming job held it 30 s per outage and the jobs queued behind it missed their deadlines).
    /// </summary>
    public async Task WaitDeliveredThroughAsync(long seq, TimeSpan timeout)
    {
        TaskCompletionSource done;
        lock (_deliveredGate)
        {
            if (_deliveredThrough >= seq || !_broker.IsConnected)
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

    private void ReleaseWaiters()
    {
        lock (_deliveredGate)
        {
            foreach (var w in _waiters)
            {
                w.Done.TrySetResult();
            }

            _waiters.Clear();
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

    /// <summary>
    /// Publishes up to one batch of undelivered entries; returns how many were delivered, or -1 when a publish failed
    /// (the rest waits for the next signal or tick).
    /// </summary>
    /// <remarks>
    /// Broker entries are pipelined: up to <see cref="PublishWindow"/> QoS 1 PUBLISHes (never more than the broker's
    /// MQTT 5 Receive Maximum, MQTT 5 §3.2.2.3.3) are on the wire at once, sent in outbox order on the one connection, so
    /// the broker receives them, and forwards them on each topic, in that order (MQTT 5 §4.6; MQTTnet queues sends on a
    /// connection first come, first served). Their PUBACKs are consumed in the same order; the first failure stops the
    /// batch, and the entries after it, even if the broker took them, stay undelivered and are published again later,
    /// byte-identical (DESIGN.md §4.2). Entries are marked delivered in one store transaction per batch instead of one
    /// per entry: the store lock is shared with ingest commits.
    /// </remarks>
    private async Task<int> DrainOnceAsync(CancellationToken cancellationToken)
    {
        var lastWritten = _storeHost.Store.DurableOutboxSeq; // read first: entries made durable later are not vouched for
        var entries = _storeHost.Store.ReadOutbox(BatchSize);
        var delivered = new List<long>(entries.Count);
        var pending = new Queue<(OutboxEntry Entry, Task Publish)>();
        var window = Math.Clamp(_broker.ReceiveMaximum, 1, PublishWindow);
        HashSet<IOutboxRoute>? failedRoutes = null;
        var failed = false;
        try
        {
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

                    if (!await CompleteAsync(pending, 0, delivered))
                    {
                        failed = true;
                        break;
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

                    delivered.Add(entry.Seq);
                    Delivered(entry.Seq);
                    continue;
                }

                if (!await CompleteAsync(pending, window - 1, delivered))
                {
                    failed = true;
                    break;
                }

                pending.Enqueue((entry, _broker.PublishAsync(entry.Topic, entry.Payload, entry.CorrelationData, retain: false, cancellationToken)));
            }

            if (!failed && !await CompleteAsync(pending, 0, delivered))
            {
                failed = true;
            }
        }
        finally
        {
            // After a failure (or cancellation) the PUBLISHes still in flight are not waited for one by one: their outcome
            // no longer matters, the entries stay undelivered. Observe them so no exception goes unobserved.
            while (pending.TryDequeue(out var left))
            {
                _ = left.Publish.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }

            if (!MarkDelivered(delivered))
            {
                failed = true;
            }
        }

        if (failed)
        {
            return -1; // stop in order; the next signal or tick retries from the first undelivered entry
        }

        if (entries.Count == 0)
        {
            Delivered(lastWritten); // nothing was pending: everything written before the read is out
        }

        return delivered.Count;
    }

    /// <summary>
    /// Waits for the oldest in-flight PUBLISHes, in order, until at most <paramref name="keep"/> remain; each one
    /// PUBACKed (or refused for good) goes to <paramref name="delivered"/>. Returns false at the first failure.
    /// </summary>
    private async Task<bool> CompleteAsync(Queue<(OutboxEntry Entry, Task Publish)> pending, int keep, List<long> delivered)
    {
        while (pending.Count > keep)
        {
            var (entry, publish) = pending.Peek();
            try
            {
                await publish;
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
                return false;
            }

            pending.Dequeue();
            delivered.Add(entry.Seq);
            Delivered(entry.Seq);
        }

        return true;
    }

    /// <summary>Removes the delivered entries from the outbox in one transaction; false when the store failed.</summary>
    private bool MarkDelivered(List<long> delivered)
    {
        if (delivered.Count == 0)
        {
            return true;
        }

        try
        {
            _storeHost.Store.MarkDelivered(delivered);
            return true;
        }
        catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
        {
            Log.PublishFailed(_logger, "outbox", "published, but the store could not delete " + delivered.Count + " delivered entries (" + ex.Message + "); it retries later, and they are published again only if the node restarts first");
            return false;
        }
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
