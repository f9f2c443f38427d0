using System.Globalization;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using EdgeNode.Daemon.Queue;
using EdgeNode.Daemon.Systemd;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Jobs;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Execution;

/// <summary>
/// The local executor: takes queued jobs in priority-then-FIFO order, runs them through the inference
/// core, and records each outcome (with its event bytes) in the store before it is published
/// (DESIGN.md §4.2). A job whose deadline passed is never run (DESIGN.md §4.5).
/// On shutdown the running job is finished; queued jobs stay in the store for the next start.
/// </summary>
internal sealed class Executor(
    StoreHost storeHost,
    ModelHost modelHost,
    Outbox.OutboxPublisher outbox,
    NodeSignals signals,
    NodeMetrics metrics,
    IOptions<NodeOptions> nodeOptions,
    IOptions<QueueOptions> queueOptions,
    IOptions<ExecutionOptions> executionOptions,
    TimeProvider time,
    LoopHeartbeat heartbeat,
    TestHooks testHooks,
    Offload.OffloadRouter offload,
    ILogger<Executor> logger) : BackgroundService
{
    private readonly string _nodeId = nodeOptions.Value.Id;

    // Liveness for the systemd watchdog: a beat per iteration and per decoded token, idle while waiting for jobs.
    private readonly LoopMonitor _loop = heartbeat.Register("executor");

    private int _inFlight;
    private readonly Lock _currentGate = new();
    private (string JobId, CancellationTokenSource Cancel)? _current;

    /// <summary>
    /// Cancels the running job if it is <paramref name="jobId"/>: generation stops before the next decode step
    /// (a Run in progress is terminated) and the job ends CANCELED. Returns false when that job is not running.
    /// </summary>
    public bool CancelRunning(string jobId)
    {
        lock (_currentGate)
        {
            if (_current is { } current && current.JobId == jobId)
            {
                current.Cancel.Cancel();
                return true;
            }

            return false;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var store = storeHost.Store;
        metrics.DepthSource = () => (store.CountQueued(), Volatile.Read(ref _inFlight));
        try
        {
            if (executionOptions.Value.Paused)
            {
                // Jobs are still accepted and committed (ingest is separate); none is taken until a restart without the flag.
                Log.ExecutionPaused(logger, store.CountQueued());
                await Task.Delay(Timeout.InfiniteTimeSpan, time, stoppingToken);
            }

            while (!stoppingToken.IsCancellationRequested)
            {
                _loop.Beat();
                JobRecord? job;
                using var cancel = new CancellationTokenSource();
                var busySince = time.GetTimestamp(); // the take (an fsynced commit) is part of the job's service time
                try
                {
                    lock (metrics.Gate)
                    {
                        // Under the gate a cancel request (IngestService) sees the job either queued or cancellable.
                        job = store.TakeNext();
                        if (job is not null)
                        {
                            _inFlight++;
                            lock (_currentGate)
                            {
                                _current = (job.Id, cancel);
                            }
                        }
                    }
                }
                catch (Exception ex) when (JobStore.IsStorageFault(ex))
                {
                    // Disk full or I/O error: the store reopens itself when space returns; keep the node up and retry.
                    Log.StoreUnavailable(logger, ex.Message);
                    _loop.Idle();
                    await signals.JobQueued.WaitAsync(TimeSpan.FromSeconds(1), time, stoppingToken);
                    continue;
                }

                if (job is null)
                {
                    _loop.Idle();
                    await signals.JobQueued.WaitAsync(TimeSpan.FromSeconds(5), time, stoppingToken);
                    continue;
                }

                // The model stays the same from this job's first token to its recorded outcome: a reload swaps between jobs.
                using var lease = await modelHost.LeaseAsync(CancellationToken.None);

                // CPU-bound: run on the thread pool so the host's threads stay free. Not tied to
                // stoppingToken: a job that started is finished, then the loop stops.
                var acceptedSeq = store.LastOutboxSeq;
                var stream = job.Request.Stream
                    ? new TokenStream(outbox, job, () => outbox.WaitDeliveredThroughAsync(acceptedSeq, TimeSpan.FromSeconds(30)), logger)
                    : null;
                var outcome = await Task.Run(() => Execute(job, stream, cancel.Token), CancellationToken.None);
                lock (_currentGate)
                {
                    _current = null;
                }

                if (stream is not null)
                {
                    await stream.CompleteAsync(); // token events go out before the final event
                }

                if (!await RecordAsync(store, job, outcome, stoppingToken))
                {
                    break; // stopping while the store is unavailable: the job stays IN_PROGRESS and is re-queued at start
                }

                var busy = time.GetElapsedTime(busySince);
                metrics.ExecutorBusy.Inc(busy.TotalSeconds);
                if (outcome.Status == JobStatuses.Succeeded)
                {
                    // μ (DESIGN.md §5): how long the executor was taken by each job it completed, from taking it off the
                    // queue to its committed outcome. Prefill + decode alone left out the two fsynced store commits
                    // per job, which on the tiny model were most of it (docs/BENCHMARKS.md, Offload): μ came out several
                    // times too high, ρ too low, and offloading started far too late.
                    offload.Estimator.Service.Record(busy, outcome.Tokens);
                }

                // Logged once the outcome is committed: a crash before this line re-runs the job, after it never.
                Log.JobFinished(logger, job.Id, outcome.Status, outcome.Code ?? "ok");

                if (outcome.Ran)
                {
                    metrics.JobDuration.Observe((time.GetUtcNow() - job.AcceptedAt).TotalSeconds);
                }

                signals.OutboxChanged.Set();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            _loop.Idle();
        }
    }

    /// <summary>
    /// Records a job's outcome; while the store fails (disk full) it retries every second, holding the outcome
    /// in memory, until the write succeeds or the node stops. Returns false when it gave up because of stopping.
    /// </summary>
    private async Task<bool> RecordAsync(JobStore store, JobRecord job, Outcome outcome, CancellationToken stoppingToken)
    {
        while (true)
        {
            try
            {
                lock (metrics.Gate)
                {
                    if (store.Finish(job.Id, outcome.Status, outcome.Payload))
                    {
                        metrics.CountFinal(outcome.Status, outcome.Code);
                    }
                    else
                    {
                        // Nothing else finishes a job this executor runs (a cancel goes through CancelRunning), so the
                        // store no longer has it: it was quarantined at run time while the job ran, and the job is lost
                        // with the moved file (JobStore.Quarantined), which already answered it FAILED storage_error.
                        // Counted lost so that the depth still reconciles.
                        metrics.Lost.Inc();
                        Log.OutcomeLost(logger, job.Id, outcome.Status);
                    }

                    _inFlight--;
                }

                return true;
            }
            catch (Exception ex) when (JobStore.IsStorageFault(ex))
            {
                Log.StoreUnavailable(logger, ex.Message);
                if (stoppingToken.IsCancellationRequested)
                {
                    return false;
                }

                _loop.Idle();
                await Task.Delay(TimeSpan.FromSeconds(1), time, CancellationToken.None);
            }
        }
    }

    private readonly record struct Outcome(string Status, string? Code, byte[] Payload, bool Ran, int Tokens = 0);

    private Outcome Execute(JobRecord job, TokenStream? stream, CancellationToken cancellationToken)
    {
        var request = job.Request;
        var started = time.GetUtcNow();
        var queueMs = (started - job.AcceptedAt).TotalMilliseconds;
        if (job.Attempts > queueOptions.Value.MaxAttempts)
        {
            // It started MaxAttempts runs and the process died in each (DESIGN.md §4.3): fail it, never block the queue.
            var message = string.Create(CultureInfo.InvariantCulture,
                $"the job was started {job.Attempts - 1} times and the node stopped during each run (Queue:MaxAttempts {queueOptions.Value.MaxAttempts}); it is failed as poison");
            return Fail(job.Id, JobStatuses.Failed, JobErrorCodes.AttemptsExhausted, message);
        }

        if (request.DeadlineMs is { } deadline && queueMs > deadline)
        {
            var message = string.Create(CultureInfo.InvariantCulture,
                $"deadline_ms {deadline} passed after {queueMs:F0} ms in the queue; the job was not run");
            return Fail(job.Id, JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded, message);
        }

        Log.JobStarted(logger, job.Id, job.Attempts); // only for a job that really runs (not poison, not expired)
        GenerationOutcome outcome;
        var streamToken = stream?.OnToken;
        var parameters = request.ToGenerationParameters() with
        {
            OnToken = token =>
            {
                OnDecodeStep();
                streamToken?.Invoke(token);
            },
        };
        try
        {
            outcome = modelHost.Generator.Generate(request.Prompt, parameters, cancellationToken);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.JobCrashed(logger, ex, job.Id);
            return Fail(job.Id, JobStatuses.Failed, JobErrorCodes.ModelError, "the model failed on this job: " + ex.Message) with { Ran = true };
        }

        if (outcome.Error is { } error)
        {
            var status = error.Code == JobErrorCodes.Canceled ? JobStatuses.Canceled : JobStatuses.Failed;
            return Fail(job.Id, status, error.Code, error.Message) with { Ran = true };
        }

        var result = outcome.Result!;
        metrics.TokensGenerated.Inc(result.GeneratedTokens.Count);
        metrics.TimeToFirstToken.Observe((queueMs + result.PrefillMs) / 1000.0); // prefill yields the first token
        var totalMs = (time.GetUtcNow() - job.AcceptedAt).TotalMilliseconds;
        var finishReason = result.FinishReason.ToString().ToLowerInvariant();
        return new Outcome(JobStatuses.Succeeded, null, JobEvents.Result(job.Id, result.Text, finishReason, result.PromptTokens.Count,
            result.GeneratedTokens.Count, "local", _nodeId, queueMs, result.PrefillMs, result.DecodeMs, totalMs), Ran: true, result.GeneratedTokens.Count);
    }

    private void OnDecodeStep()
    {
        _loop.Beat();
        testHooks.OnDecodeStep();
    }

    private static Outcome Fail(string jobId, string status, string code, string message) =>
        new(status, code, JobEvents.Error(jobId, status, code, message), Ran: false);
}
