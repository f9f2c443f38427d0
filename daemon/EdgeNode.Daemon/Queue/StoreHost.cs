using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Queue;

/// <summary>
/// Start-up step "open the store": takes the state directory's lock, opens the LiteDB job store and
/// re-queues jobs a previous process left IN_PROGRESS (DESIGN.md §4.3). Registered first, so it is
/// stopped (and the store closed) after every loop that uses it.
/// </summary>
internal sealed class StoreHost(IOptions<NodeOptions> node, NodeState state, NodeMetrics metrics, TimeProvider time, ILogger<JobStore> logger, NodeSignals signals) : IHostedService, IDisposable
{
    private JobStore? _store;

    /// <exception cref="InvalidOperationException">Before start-up opened the store.</exception>
    public JobStore Store => _store ?? throw new InvalidOperationException("job store not open");

    public Task StartAsync(CancellationToken cancellationToken)
    {
        state.StartupStage = "opening job store";
        _store = JobStore.Open(node.Value.ResolveStateDirectory(), time, logger);
        var requeued = _store.RequeueInterrupted();
        if (requeued > 0)
        {
            StoreLog.Requeued(logger, requeued);
        }

        metrics.Recovered.Inc(_store.CountQueued() + _store.CountOffloaded()); // OFFLOADED jobs resume on the relay
        var store = _store;
        // The depth side of the invariant from the same moment on (the executor replaces it with one that adds its job in
        // flight when it starts): a scrape in between showed recovered jobs with a depth of 0 (newcomer check, session 5).
        lock (metrics.Gate)
        {
            metrics.DepthSource ??= () => (store.CountQueued(), 0);
        }
        if (_store.QuarantinedTo is { } quarantined)
        {
            ReportQuarantine(quarantined);
        }

        _store.Quarantined += OnQuarantined;

        state.StoreOpen = true;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// The store found its database corrupt while running and moved it aside (<see cref="JobStore.Quarantined"/>):
    /// reported like a quarantine at start, and the jobs lost with the file leave the depth side of the metrics
    /// invariant through <c>edgenode_jobs_lost_total</c> (a running job is counted by the executor when its outcome
    /// cannot be recorded). Runs under the store lock: only gauges, counters and status fields.
    /// </summary>
    private void OnQuarantined(StoreQuarantine quarantine)
    {
        ReportQuarantine(quarantine.Directory);
        metrics.Lost.Inc(quarantine.LostQueued + quarantine.LostOffloaded);
        signals.OutboxChanged.Set(); // the lost jobs' final events
        signals.StatusChanged.Set(); // the retained status names the quarantine now, not at the next interval
    }

    private void ReportQuarantine(string directory)
    {
        state.StoreQuarantinedTo = directory;
        metrics.StoreQuarantined.Set(1);
        metrics.StoreErrors.WithLabels("quarantined").Inc();
    }

    public void Dispose()
    {
        state.StoreOpen = false;
        _store?.Dispose();
    }
}

/// <summary>Log messages of the queue feature (event ids 200-299).</summary>
internal static partial class StoreLog
{
    [LoggerMessage(200, LogLevel.Warning, "Re-queued {Count} job(s) left in progress by the previous run")]
    public static partial void Requeued(ILogger logger, int count);

    [LoggerMessage(201, LogLevel.Warning, "Store maintenance (purge, checkpoint) failed: {Reason}; retrying at the next period")]
    public static partial void MaintenanceFailed(ILogger logger, string reason);
}
