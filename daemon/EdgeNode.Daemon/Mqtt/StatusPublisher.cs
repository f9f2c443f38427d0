using System.Text.Json;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Prometheus;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>
/// Publishes the retained node status on <c>{prefix}/nodes/{nodeId}/status</c> (DESIGN.md §3) when the link
/// comes up and every <c>Node:StatusIntervalSeconds</c>: online, version, model, execution provider, queue
/// depth and job counters. The broker link's Will sets <c>"online": false</c> if the node dies; a clean stop
/// publishes the same itself.
/// </summary>
internal sealed class StatusPublisher : BackgroundService
{
    private readonly BrokerConnection _broker;
    private readonly NodeState _state;
    private readonly NodeMetrics _metrics;
    private readonly Offload.OffloadRouter _router;
    private readonly NodeOptions _node;
    private readonly TimeProvider _time;
    private readonly ILogger<StatusPublisher> _logger;
    private readonly Signal _wake;

    public StatusPublisher(BrokerConnection broker, NodeState state, NodeMetrics metrics, IOptions<NodeOptions> node, TimeProvider time, ILogger<StatusPublisher> logger, Offload.OffloadRouter router, NodeSignals signals)
    {
        _wake = signals.StatusChanged;
        _router = router;
        _broker = broker;
        _state = state;
        _metrics = metrics;
        _node = node.Value;
        _time = time;
        _logger = logger;
        _broker.ConnectionChanged += up =>
        {
            if (up)
            {
                _wake.Set();
            }
        };
    }

    /// <summary>The retained payload of a node that is not running: <c>{"node":..,"online":false}</c>.</summary>
    public static byte[] OfflinePayload(string nodeId) =>
        JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object> { ["node"] = nodeId, ["online"] = false });

    /// <summary>The current status document (also used by other management planes).</summary>
    public Dictionary<string, object?> Snapshot()
    {
        var model = _state.Model;
        var (queued, inFlight) = _metrics.DepthSource?.Invoke() ?? (0, 0);
        return new Dictionary<string, object?>
        {
            ["node"] = _node.Id,
            ["online"] = true,
            ["version"] = VersionInfo.Version,
            ["model"] = model is null ? null : Path.GetFileName(model.Path),
            ["precision"] = model?.Precision,
            ["execution_provider"] = model?.ExecutionProvider,
            ["queue_depth"] = queued,
            ["in_flight"] = inFlight,
            ["jobs"] = new Dictionary<string, double>
            {
                ["accepted"] = _metrics.Accepted.Value,
                ["recovered"] = _metrics.Recovered.Value,
                ["succeeded"] = _metrics.Succeeded.Value,
                ["failed"] = Sum(_metrics.Failed),
                ["rejected"] = Sum(_metrics.Rejected),
                ["expired"] = _metrics.Expired.Value,
                ["cancelled"] = _metrics.Cancelled.Value,
            },
            ["offload"] = OffloadStatus(),
            ["store_quarantined_to"] = _state.StoreQuarantinedTo,
            ["timestamp"] = _time.GetUtcNow().ToString("O", System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await _wake.WaitAsync(TimeSpan.FromSeconds(_node.StatusIntervalSeconds), _time, stoppingToken);
                if (_broker.IsConnected)
                {
                    await PublishAsync(JsonSerializer.SerializeToUtf8Bytes(Snapshot()), stoppingToken);
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
        if (_broker.IsConnected)
        {
            await PublishAsync(OfflinePayload(_node.Id), cancellationToken);
        }
    }

    private async Task PublishAsync(byte[] payload, CancellationToken cancellationToken)
    {
        try
        {
            await _broker.PublishAsync(_broker.Topics.Status, payload, correlationData: null, retain: true, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.StatusPublishFailed(_logger, ex.Message);
        }
    }

    /// <summary>λ, μ (jobs/s), ρ, predicted W (s; null when infinite or unknown), the relay's mean round trip (s; null before the
    /// first), routed and error totals, circuit state.</summary>
    private Dictionary<string, object?> OffloadStatus()
    {
        var q = _router.Estimator.Snapshot();
        static double? Finite(double v) => double.IsFinite(v) ? Math.Round(v, 4) : null;
        return new Dictionary<string, object?>
        {
            ["enabled"] = _router.Enabled,
            ["circuit"] = _router.CircuitName,
            ["arrival_rate"] = Finite(q.ArrivalRate),
            ["service_rate"] = Finite(q.ServiceRate),
            ["utilization"] = Finite(q.Utilization),
            ["predicted_time_in_system_s"] = Finite(q.PredictedTimeInSystem),
            ["tokens_per_second"] = Finite(q.TokensPerSecond),
            ["offloaded"] = _router.OffloadedCount?.Invoke() ?? 0,
            ["relay_round_trip_s"] = _router.RelayRoundTripSeconds > 0 ? Finite(_router.RelayRoundTripSeconds) : null,
            ["routed_relay"] = Sum(_metrics.RoutedToRelay),
            ["returned_local"] = _metrics.RelayReturned.Value,
            ["relay_errors"] = Sum(_metrics.RelayErrors),
        };
    }

    private static double Sum(Counter counter) =>
        counter.GetAllLabelValues().Sum(labels => counter.WithLabels(labels).Value);
}
