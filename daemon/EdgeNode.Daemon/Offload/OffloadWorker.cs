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
/// failure, timeout, 5xx, 429/503 or open circuit the job goes back to the local queue at its place, or ends
/// TIMED_OUT (<c>deadline_exceeded</c>) at once if its deadline has passed. A cancel of an OFFLOADED job abandons its
/// request (<see cref="AbandonSend"/>). On shutdown sends in progress are abandoned: the jobs stay OFFLOADED and are
/// re-sent on the next start.
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
    // Jobs being sent, each with the token that abandons its request (shutdown, or a cancel of the job).
    private readonly Dictionary<string, CancellationTokenSource> _sending = new(StringComparer.Ordinal);
    private readonly Lock _sendingGate = new();

    /// <summary>Set by ingest when it stored OFFLOADED jobs.</summary>
    public Signal JobOffloaded { get; } = new();

    /// <summary>
    /// Abandons the relay request of <paramref name="jobId"/> if one is in progress (<see cref="Ingest.JobControl"/>
    /// calls it after storing the job CANCELED): the HTTP request is aborted (a relay that notices cancels the job),
    /// and the send ends without recording anything. Returns false when no request of that job is in progress (a send that
    /// starts later finds the job no longer OFFLOADED and does not send it).
    /// </summary>
    public bool AbandonSend(string jobId)
    {
        lock (_sendingGate)
        {
            if (!_sending.TryGetValue(jobId, out var abandon))
            {
                return false;
            }

            abandon.Cancel();
            return true;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var store = storeHost.Store;
        router.OffloadedCount = store.CountOffloaded;
        if (router.Client is not { } client)
        {
            // Offload is off now but an earlier run left jobs OFFLOADED: run them locally, never strand them.
            foreach (var job in store.ListOffloaded())
            {
                Return(store, job, "offload is disabled");
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
                    CancellationTokenSource abandon;
                    lock (_sendingGate)
                    {
                        if (_sending.ContainsKey(job.Id))
                        {
                            continue;
                        }

                        abandon = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                        _sending.Add(job.Id, abandon);
                    }

                    try
                    {
                        await slots.WaitAsync(stoppingToken);
                    }
                    catch (OperationCanceledException)
                    {
                        Forget(job.Id, abandon);
                        throw;
                    }

                    sends.RemoveAll(t => t.IsCompleted);
                    sends.Add(Task.Run(() => SendAsync(client, store, job, slots, abandon, stoppingToken), CancellationToken.None));
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

    private async Task SendAsync(RelayClient client, JobStore store, JobRecord job, SemaphoreSlim slots, CancellationTokenSource abandon, CancellationToken stoppingToken)
    {
        try
        {
            // The list was read before this send was registered: a cancel in between already ended the job.
            if (store.Get(job.Id) is not { Status: JobStatuses.Offloaded })
            {
                return;
            }

            int? leftMs = null;
            if (job.Deadline is { } deadline)
            {
                var left = (deadline - time.GetUtcNow()).TotalMilliseconds;
                if (left < 1)
                {
                    Return(store, job, "deadline passed before sending");
                    return;
                }

                leftMs = (int)Math.Min(left, int.MaxValue);
            }

            var sentAt = time.GetTimestamp();
            var outcome = await client.SubmitAsync(RelayJobJson.Write(job.Request, leftMs), job.Id, null, abandon.Token);
            if (outcome.Kind == RelayOutcomeKind.Completed)
            {
                router.RecordRelayRoundTrip(time.GetElapsedTime(sentAt)); // what the next routing decisions predict from
                var status = outcome.Status is { } s && JobStatuses.IsFinal(s) ? s : JobStatuses.Failed;
                bool recorded;
                lock (metrics.Gate)
                {
                    recorded = store.Finish(job.Id, status, outcome.Event!);
                    if (recorded)
                    {
                        metrics.CountFinal(status, RelayJobJson.ErrorCode(outcome.Event!));
                    }
                }

                if (recorded)
                {
                    OffloadLog.Completed(logger, job.Id, status);
                    signals.OutboxChanged.Set();
                }
                else
                {
                    OffloadLog.AnswerIgnored(logger, job.Id, status); // canceled meanwhile: the first outcome stays
                }

                return;
            }

            var kind = outcome.Kind switch
            {
                RelayOutcomeKind.Throttled => "throttled",
                RelayOutcomeKind.Unavailable => "unavailable",
                _ => "failed",
            };
            metrics.RelayErrors.WithLabels(kind).Inc();
            Return(store, job, kind + (outcome.Error is { } e ? ": " + e : ""));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Shutdown: the job stays OFFLOADED and is re-sent (same id) on the next start.
        }
        catch (OperationCanceledException) when (abandon.IsCancellationRequested)
        {
            OffloadLog.Abandoned(logger, job.Id); // canceled by its device or operator: already stored CANCELED
        }
        catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
        {
            OffloadLog.StoreFailed(logger, job.Id, ex.Message); // stays OFFLOADED; retried on the next pass
        }
        finally
        {
            Forget(job.Id, abandon);
            slots.Release();
        }
    }

    private void Forget(string jobId, CancellationTokenSource abandon)
    {
        lock (_sendingGate)
        {
            _sending.Remove(jobId);
            abandon.Dispose();
        }
    }

    /// <summary>
    /// Puts a job the relay did not take back in the local queue, or, when its deadline has already passed, ends it
    /// TIMED_OUT (<c>deadline_exceeded</c>) here: queued, it would only cost the executor two store commits to fail it
    /// (under overload those commits took most of the executor's time, docs/BENCHMARKS.md Offload).
    /// </summary>
    private void Return(JobStore store, JobRecord job, string why)
    {
        var now = time.GetUtcNow();
        if (job.Deadline is { } deadline && (deadline - now).TotalMilliseconds < 1) // the send's own test: under 1 ms left
        {
            var waitedMs = (now - job.AcceptedAt).TotalMilliseconds;
            var message = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"deadline_ms {job.Request.DeadlineMs} passed after {waitedMs:F0} ms while the job was offloaded ({why}); the job was not run");
            bool expired;
            lock (metrics.Gate)
            {
                expired = store.Finish(job.Id, JobStatuses.TimedOut, JobEvents.Error(job.Id, JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded, message));
                if (expired)
                {
                    metrics.CountFinal(JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded);
                }
            }

            if (expired)
            {
                OffloadLog.Expired(logger, job.Id, why);
                signals.OutboxChanged.Set();
            }

            return;
        }

        var jobId = job.Id;
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

    [LoggerMessage(1404, LogLevel.Information, "Offloaded job {JobId} was canceled: its relay request was abandoned")]
    public static partial void Abandoned(ILogger logger, string jobId);

    [LoggerMessage(1405, LogLevel.Information, "The relay answered {Status} for job {JobId} after it had its final outcome (canceled meanwhile); the answer is ignored")]
    public static partial void AnswerIgnored(ILogger logger, string jobId, string status);

    [LoggerMessage(1406, LogLevel.Information, "Offloaded job {JobId} ends TIMED_OUT: its deadline passed before the relay ran it ({Reason})")]
    public static partial void Expired(ILogger logger, string jobId, string reason);
}
