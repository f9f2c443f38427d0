using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Jobs;
using EdgeNode.Shared.Offload;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Offload;

/// <summary>
/// Sends OFFLOADED jobs to the cloud relay (DESIGN.md §5, §6) and records their outcome. A job is stored OFFLOADED
/// by ingest before any HTTP call; this worker picks up every OFFLOADED job (those of earlier runs too: a crash
/// while offloaded re-sends it with the same id, and the relay answers a known id with its stored outcome).
/// On an outcome the relay's final event is recorded byte-identically with <see cref="JobStore.Finish"/>; on a
/// failure, timeout, 5xx, 429/503 or open circuit the job goes back to the local queue at its place (the executor
/// fails it with <c>deadline_exceeded</c> if its deadline has passed). On shutdown sends in progress are abandoned:
/// the jobs stay OFFLOADED and are re-sent on the next start.
/// </summary>
internal sealed class OffloadWorker(
    StoreHost storeHost,
    OffloadRouter router,
    NodeSignals signals,
    NodeMetrics metrics,
    IOptions<OffloadOptions> options,
    TimeProvider time,
    ILogger<OffloadWorker> logger) : BackgroundService
{
    private readonly HashSet<string> _sending = new(StringComparer.Ordinal);
    private readonly Lock _sendingGate = new();

    /// <summary>Set by ingest when it stored OFFLOADED jobs.</summary>
    public Signal JobOffloaded { get; } = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var store = storeHost.Store;
        router.OffloadedCount = store.CountOffloaded;
        if (router.Client is not { } client)
        {
            // Offload is off now but an earlier run left jobs OFFLOADED: run them locally, never strand them.
            foreach (var job in store.ListOffloaded())
            {
                Return(store, job.Id, "offload is disabled");
            }

            return;
        }

        OffloadLog.Enabled(logger, options.Value.RelayUrl!, options.Value.DeviceId ?? "(Node:Id)", options.Value.RhoThreshold, options.Value.RhoExitThreshold);
        using var slots = new SemaphoreSlim(options.Value.MaxConcurrent);
        var sends = new List<Task>();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                IReadOnlyList<JobRecord> pending;
                try
                {
                    pending = store.ListOffloaded();
                }
                catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
                {
                    OffloadLog.StoreFailed(logger, "", ex.Message);
                    pending = [];
                }

                foreach (var job in pending)
                {
                    lock (_sendingGate)
                    {
                        if (!_sending.Add(job.Id))
                        {
                            continue;
                        }
                    }

                    await slots.WaitAsync(stoppingToken);
                    sends.RemoveAll(t => t.IsCompleted);
                    sends.Add(Task.Run(() => SendAsync(client, store, job, slots, stoppingToken), CancellationToken.None));
                }

                await JobOffloaded.WaitAsync(TimeSpan.FromSeconds(5), time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            await Task.WhenAll(sends);
        }
    }

    private async Task SendAsync(RelayClient client, JobStore store, JobRecord job, SemaphoreSlim slots, CancellationToken stoppingToken)
    {
        try
        {
            int? leftMs = null;
            if (job.Deadline is { } deadline)
            {
                var left = (deadline - time.GetUtcNow()).TotalMilliseconds;
                if (left < 1)
                {
                    Return(store, job.Id, "deadline passed before sending");
                    return;
                }

                leftMs = (int)Math.Min(left, int.MaxValue);
            }

            var outcome = await client.SubmitAsync(RelayJobJson.Write(job.Request, leftMs), job.Id, null, stoppingToken);
            if (outcome.Kind == RelayOutcomeKind.Completed)
            {
                var status = outcome.Status is { } s && JobStatuses.IsFinal(s) ? s : JobStatuses.Failed;
                lock (metrics.Gate)
                {
                    if (store.Finish(job.Id, status, outcome.Event!))
                    {
                        metrics.CountFinal(status, RelayJobJson.ErrorCode(outcome.Event!));
                    }
                }

                OffloadLog.Completed(logger, job.Id, status);
                signals.OutboxChanged.Set();
                return;
            }

            var kind = outcome.Kind switch
            {
                RelayOutcomeKind.Throttled => "throttled",
                RelayOutcomeKind.Unavailable => "unavailable",
                _ => "failed",
            };
            metrics.RelayErrors.WithLabels(kind).Inc();
            Return(store, job.Id, kind + (outcome.Error is { } e ? ": " + e : ""));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutdown: the job stays OFFLOADED and is re-sent (same id) on the next start.
        }
        catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
        {
            OffloadLog.StoreFailed(logger, job.Id, ex.Message); // stays OFFLOADED; retried on the next pass
        }
        finally
        {
            lock (_sendingGate)
            {
                _sending.Remove(job.Id);
            }

            slots.Release();
        }
    }

    private void Return(JobStore store, string jobId, string why)
    {
        bool moved;
        lock (metrics.Gate)
        {
            moved = store.ReturnToQueue(jobId);
            if (moved)
            {
                metrics.RelayReturned.Inc();
            }
        }

        if (moved)
        {
            OffloadLog.Returned(logger, jobId, why);
            signals.JobQueued.Set();
        }
    }
}

/// <summary>Log messages of the daemon's offload feature (event ids 1400-1419).</summary>
internal static partial class OffloadLog
{
    [LoggerMessage(1400, LogLevel.Information, "Job {JobId} finished on the relay: {Status}")]
    public static partial void Completed(ILogger logger, string jobId, string status);

    [LoggerMessage(1401, LogLevel.Warning, "Offloaded job {JobId} goes back to the local queue: {Reason}")]
    public static partial void Returned(ILogger logger, string jobId, string reason);

    [LoggerMessage(1402, LogLevel.Error, "Offload could not update the store for job {JobId}: {Reason}; it stays OFFLOADED and is retried")]
    public static partial void StoreFailed(ILogger logger, string jobId, string reason);

    [LoggerMessage(1403, LogLevel.Information, "Offload to {RelayUrl} enabled as device {DeviceId} (ρ enter {Enter}, exit {Exit})")]
    public static partial void Enabled(ILogger logger, string relayUrl, string deviceId, double enter, double exit);
}
