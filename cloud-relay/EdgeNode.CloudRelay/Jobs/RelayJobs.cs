using System.Globalization;
using System.Threading.Channels;
using System.Threading.RateLimiting;
using EdgeNode.CloudRelay.Backends;
using EdgeNode.CloudRelay.Metrics;
using EdgeNode.CloudRelay.Options;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Jobs;
using EdgeNode.Shared.Queueing;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Jobs;

/// <summary>A job's final outcome as answered and stored: HTTP status, the event bytes, the job status.</summary>
internal sealed record StoredOutcome(int HttpStatus, byte[] Event, string Status);

/// <summary>
/// How a job ended for the waiting requests: its <see cref="StoredOutcome"/>, or a transient refusal (queue full,
/// backend unavailable, abandoned) that stores nothing, with the HTTP status and Retry-After to answer.
/// </summary>
internal sealed record JobReply(StoredOutcome? Outcome, int HttpStatus = 0, TimeSpan? RetryAfter = null, string? Message = null, bool Abandoned = false);

/// <summary>One job in flight: the requests waiting for it share its completion.</summary>
internal sealed class JobExecution(string key, JobRequest job, DateTimeOffset acceptedAt)
{
    public string Key { get; } = key;

    public JobRequest Job { get; } = job;

    public DateTimeOffset AcceptedAt { get; } = acceptedAt;

    public TaskCompletionSource<JobReply> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CancellationTokenSource Cancel { get; } = new();

    /// <summary>Token events for the owner's SSE stream (stream jobs only); completed when the job ends.</summary>
    public Channel<byte[]>? Tokens { get; set; }

    public int Waiters { get; set; }
}

/// <summary>What <see cref="RelayJobs.Join"/> found for a (device, id).</summary>
internal readonly record struct JobTicket(StoredOutcome? Stored, JobExecution? Execution, bool IsOwner);

/// <summary>
/// The relay's job table and queue. Idempotency: outcomes are kept by (device id, job id) for
/// <c>Relay:RetentionSeconds</c> (at most <c>Relay:MaxRetainedOutcomes</c>, oldest dropped first); a re-send
/// gets the stored bytes, and a re-send while the job runs waits for the same run, so a job never runs twice
/// at once. Kept in memory: a relay restart forgets them (a re-send then runs the job again, once).
/// Admission: <c>Relay:MaxConcurrentJobs</c> slots and <c>Relay:MaxQueuedJobs</c> waiting places
/// (a <see cref="ConcurrencyLimiter"/>); when both are taken the job is refused at once with 503 and a Retry-After
/// of the predicted drain time (jobs ahead × mean service time / slots, from the μ estimator).
/// A job is canceled when every request waiting for it has gone; it is then forgotten, not stored.
/// </summary>
internal sealed class RelayJobs : IDisposable
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, JobExecution> _running = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (StoredOutcome Outcome, DateTimeOffset At)> _done = new(StringComparer.Ordinal);
    private readonly Queue<(string Key, DateTimeOffset At)> _doneOrder = new();
    private readonly ConcurrencyLimiter _slots;
    private readonly IRelayBackend _backend;
    private readonly RelayMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<RelayJobs> _logger;
    private readonly RelayOptions _options;
    private readonly TimeSpan _retention;
    private int _queued;
    private int _runningCount;

    public RelayJobs(IOptions<RelayOptions> options, IRelayBackend backend, RelayMetrics metrics, TimeProvider time, ILogger<RelayJobs> logger)
    {
        _options = options.Value;
        _backend = backend;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _retention = TimeSpan.FromSeconds(_options.RetentionSeconds);
        _slots = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = _options.MaxConcurrentJobs,
            QueueLimit = _options.MaxQueuedJobs,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
        Estimator = new QueueEstimator(time, TimeSpan.FromSeconds(10));
        metrics.Registry.AddBeforeCollectCallback(() =>
        {
            var snapshot = Estimator.Snapshot();
            metrics.ArrivalRate.Set(snapshot.ArrivalRate);
            metrics.ServiceRate.Set(snapshot.ServiceRate);
            metrics.TokensPerSecond.Set(snapshot.TokensPerSecond);
            metrics.Queued.Set(Volatile.Read(ref _queued));
            metrics.Running.Set(Volatile.Read(ref _runningCount));
            lock (_gate)
            {
                Prune(_time.GetUtcNow());
                metrics.Retained.Set(_done.Count);
            }
        });
    }

    /// <summary>λ and μ of this relay (per slot).</summary>
    public QueueEstimator Estimator { get; }

    /// <summary>
    /// Finds the stored outcome or the running execution of (device, id), or registers a new execution whose
    /// caller becomes its owner and must call <see cref="Start"/>. Counts the caller as a waiter.
    /// </summary>
    public JobTicket Join(string deviceId, JobRequest job)
    {
        var key = deviceId + "\n" + job.Id;
        var now = _time.GetUtcNow();
        lock (_gate)
        {
            Prune(now);
            if (_done.TryGetValue(key, out var stored))
            {
                return new JobTicket(stored.Outcome, null, false);
            }

            if (_running.TryGetValue(key, out var running))
            {
                running.Waiters++;
                return new JobTicket(null, running, false);
            }

            var execution = new JobExecution(key, job, now) { Waiters = 1 };
            _running.Add(key, execution);
            return new JobTicket(null, execution, true);
        }
    }

    /// <summary>A waiting request went away; the job is canceled when it was the last.</summary>
    public void Leave(JobExecution execution)
    {
        lock (_gate)
        {
            execution.Waiters--;
            if (execution.Waiters > 0 || execution.Completion.Task.IsCompleted)
            {
                return;
            }
        }

        execution.Cancel.Cancel();
    }

    /// <summary>
    /// Admits the owner's job: false (and the execution completed with a 503 reply) when the queue is full;
    /// otherwise the job runs in the background and completes <see cref="JobExecution.Completion"/>.
    /// </summary>
    public bool Start(JobExecution execution)
    {
        Estimator.Arrivals.Record();
        var pending = _slots.AcquireAsync(1, execution.Cancel.Token);
        Task<RateLimitLease> lease;
        if (pending.IsCompletedSuccessfully)
        {
            var granted = pending.Result;
            if (!granted.IsAcquired)
            {
                granted.Dispose();
                _metrics.Throttled.WithLabels("queue_full").Inc();
                Complete(execution, new JobReply(null, 503, QueueFullRetryAfter(), "the relay's queue is full"));
                return false;
            }

            lease = Task.FromResult(granted);
        }
        else
        {
            lease = pending.AsTask();
        }

        Interlocked.Increment(ref _queued);
        _ = Task.Run(() => RunAsync(execution, lease));
        return true;
    }

    private TimeSpan QueueFullRetryAfter()
    {
        var mean = Estimator.Service.MeanServiceSeconds;
        var ahead = Volatile.Read(ref _queued) + Volatile.Read(ref _runningCount);
        var seconds = mean > 0 ? Math.Ceiling(ahead * mean / _options.MaxConcurrentJobs) : 1;
        return TimeSpan.FromSeconds(Math.Clamp(seconds, 1, 60));
    }

    private async Task RunAsync(JobExecution execution, Task<RateLimitLease> leaseTask)
    {
        var job = execution.Job;
        RateLimitLease? lease = null;
        var dequeued = false;
        try
        {
            lease = await leaseTask;
            Interlocked.Decrement(ref _queued);
            dequeued = true;
            if (!lease.IsAcquired)
            {
                Complete(execution, new JobReply(null, 503, QueueFullRetryAfter(), "the relay's queue is full"));
                return;
            }

            var started = _time.GetUtcNow();
            var queueMs = (started - execution.AcceptedAt).TotalMilliseconds;
            if (job.DeadlineMs is { } deadline && queueMs > deadline)
            {
                var message = string.Create(CultureInfo.InvariantCulture,
                    $"deadline_ms {deadline} passed after {queueMs:F0} ms in the relay's queue; the job was not run");
                Finish(execution, 200, JobStatuses.TimedOut, JobEvents.Error(job.Id, JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded, message));
                return;
            }

            Interlocked.Increment(ref _runningCount);
            BackendResult result;
            try
            {
                Action<GeneratedToken>? onToken = null;
                if (execution.Tokens is { } tokens)
                {
                    onToken = t => tokens.Writer.TryWrite(JobEvents.Token(job.Id, t.Index, t.Text));
                }

                result = await _backend.RunAsync(job, onToken, execution.Cancel.Token);
            }
            finally
            {
                Interlocked.Decrement(ref _runningCount);
            }

            var serviceSeconds = (_time.GetUtcNow() - started).TotalSeconds;
            switch (result.Kind)
            {
                case BackendResultKind.Generated:
                    Estimator.Service.Record(TimeSpan.FromSeconds(serviceSeconds), result.CompletionTokens);
                    _metrics.ServiceSeconds.Observe(serviceSeconds);
                    var totalMs = (_time.GetUtcNow() - execution.AcceptedAt).TotalMilliseconds;
                    Finish(execution, 200, JobStatuses.Succeeded, JobEvents.Result(job.Id, result.Text, result.FinishReason,
                        result.PromptTokens, result.CompletionTokens, "relay", _options.NodeId, queueMs, result.PrefillMs, result.DecodeMs, totalMs));
                    break;
                case BackendResultKind.JobFailed when result.Error!.Code == GenerationError.Canceled:
                    Complete(execution, new JobReply(null, 499, null, "canceled: every client went away", Abandoned: true));
                    break;
                case BackendResultKind.JobFailed when result.Error!.Code == GenerationError.PromptTooLong:
                    Finish(execution, 400, JobStatuses.Rejected, JobEvents.Error(job.Id, JobStatuses.Rejected, result.Error.Code, result.Error.Message));
                    break;
                case BackendResultKind.JobFailed:
                    Finish(execution, 200, JobStatuses.Failed, JobEvents.Error(job.Id, JobStatuses.Failed, result.Error!.Code, result.Error.Message));
                    break;
                default:
                    _metrics.BackendUnavailable.Inc();
                    if (result.HttpStatus == 503)
                    {
                        _metrics.Throttled.WithLabels("upstream").Inc();
                    }

                    Complete(execution, new JobReply(null, result.HttpStatus, result.RetryAfter, result.Error?.Message));
                    break;
            }
        }
        catch (OperationCanceledException) when (execution.Cancel.IsCancellationRequested)
        {
            if (!dequeued)
            {
                Interlocked.Decrement(ref _queued);
            }

            Complete(execution, new JobReply(null, 499, null, "canceled: every client went away", Abandoned: true));
        }
        catch (Exception ex)
        {
            Log.JobCrashed(_logger, ex, job.Id);
            Complete(execution, new JobReply(null, 500, null, "internal error in the relay"));
        }
        finally
        {
            lease?.Dispose();
        }
    }

    private void Finish(JobExecution execution, int httpStatus, string status, byte[] payload)
    {
        _metrics.Jobs.WithLabels(status).Inc();
        Log.JobFinished(_logger, execution.Job.Id, status);
        Complete(execution, new JobReply(new StoredOutcome(httpStatus, payload, status)));
    }

    private void Complete(JobExecution execution, JobReply reply)
    {
        lock (_gate)
        {
            _running.Remove(execution.Key);
            if (reply.Outcome is not null)
            {
                var now = _time.GetUtcNow();
                _done[execution.Key] = (reply.Outcome, now);
                _doneOrder.Enqueue((execution.Key, now));
                Prune(now);
            }
        }

        execution.Tokens?.Writer.TryComplete();
        execution.Completion.TrySetResult(reply);
    }

    /// <summary>Drops outcomes older than the retention window or beyond the count limit. Under <see cref="_gate"/>.</summary>
    private void Prune(DateTimeOffset now)
    {
        while (_doneOrder.TryPeek(out var oldest) &&
               (now - oldest.At > _retention || _doneOrder.Count > _options.MaxRetainedOutcomes))
        {
            _doneOrder.Dequeue();
            if (_done.TryGetValue(oldest.Key, out var entry) && entry.At == oldest.At)
            {
                _done.Remove(oldest.Key);
            }
        }
    }

    public void Dispose() => _slots.Dispose();
}
