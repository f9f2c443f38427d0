using System.Globalization;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using EdgeNode.Daemon.Queue;
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
    NodeSignals signals,
    NodeMetrics metrics,
    IOptions<NodeOptions> nodeOptions,
    IOptions<QueueOptions> queueOptions,
    IOptions<ExecutionOptions> executionOptions,
    TimeProvider time,
    ILogger<Executor> logger) : BackgroundService
{
    private readonly string _nodeId = nodeOptions.Value.Id;

    private int _inFlight;

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
                JobRecord? job;
                lock (metrics.Gate)
                {
                    job = store.TakeNext();
                    if (job is not null)
                    {
                        _inFlight++;
                    }
                }

                if (job is null)
                {
                    await signals.JobQueued.WaitAsync(TimeSpan.FromSeconds(5), time, stoppingToken);
                    continue;
                }

                // CPU-bound: run on the thread pool so the host's threads stay free. Not tied to
                // stoppingToken: a job that started is finished, then the loop stops.
                var outcome = await Task.Run(() => Execute(job), CancellationToken.None);
                lock (metrics.Gate)
                {
                    store.Finish(job.Id, outcome.Status, outcome.Payload);
                    metrics.CountFinal(outcome.Status, outcome.Code);
                    _inFlight--;
                }

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
    }

    private readonly record struct Outcome(string Status, string? Code, byte[] Payload, bool Ran);

    private Outcome Execute(JobRecord job)
    {
        var request = job.Request;
        Log.JobStarted(logger, job.Id, job.Attempts);
        var started = time.GetUtcNow();
        var queueMs = (started - job.AcceptedAt).TotalMilliseconds;
        if (job.Attempts > queueOptions.Value.MaxAttempts)
        {
            // It started MaxAttempts runs and the process died in each (DESIGN.md §4.3): fail it, never block the queue.
            var message = string.Create(CultureInfo.InvariantCulture,
                $"the job was started {job.Attempts - 1} times and the node stopped during each run (Queue:MaxAttempts {queueOptions.Value.MaxAttempts}); it is failed as poison");
            Log.JobFinished(logger, job.Id, JobStatuses.Failed, JobErrorCodes.AttemptsExhausted);
            return Fail(job.Id, JobStatuses.Failed, JobErrorCodes.AttemptsExhausted, message);
        }

        if (request.DeadlineMs is { } deadline && queueMs > deadline)
        {
            var message = string.Create(CultureInfo.InvariantCulture,
                $"deadline_ms {deadline} passed after {queueMs:F0} ms in the queue; the job was not run");
            Log.JobFinished(logger, job.Id, JobStatuses.TimedOut, message);
            return Fail(job.Id, JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded, message);
        }

        GenerationOutcome outcome;
        var parameters = ToParameters(request);
        try
        {
            outcome = modelHost.Generator.Generate(request.Prompt, parameters, CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.JobCrashed(logger, ex, job.Id);
            return Fail(job.Id, JobStatuses.Failed, JobErrorCodes.ModelError, "the model failed on this job: " + ex.Message) with { Ran = true };
        }

        if (outcome.Error is { } error)
        {
            var status = error.Code == JobErrorCodes.Canceled ? JobStatuses.Canceled : JobStatuses.Failed;
            Log.JobFinished(logger, job.Id, status, error.Code);
            return Fail(job.Id, status, error.Code, error.Message) with { Ran = true };
        }

        var result = outcome.Result!;
        metrics.TokensGenerated.Inc(result.GeneratedTokens.Count);
        metrics.TimeToFirstToken.Observe((queueMs + result.PrefillMs) / 1000.0); // prefill yields the first token
        var totalMs = (time.GetUtcNow() - job.AcceptedAt).TotalMilliseconds;
        var finishReason = result.FinishReason.ToString().ToLowerInvariant();
        Log.JobFinished(logger, job.Id, JobStatuses.Succeeded, finishReason);
        return new Outcome(JobStatuses.Succeeded, null, JobEvents.Result(job.Id, result.Text, finishReason, result.PromptTokens.Count,
            result.GeneratedTokens.Count, "local", _nodeId, queueMs, result.PrefillMs, result.DecodeMs, totalMs), Ran: true);
    }

    private static Outcome Fail(string jobId, string status, string code, string message) =>
        new(status, code, JobEvents.Error(jobId, status, code, message), Ran: false);

    /// <summary>Maps the request's sampling fields (DESIGN.md §3) to the inference core's parameters.</summary>
    internal static GenerationParameters ToParameters(JobRequest request) => new()
    {
        MaxNewTokens = request.MaxNewTokens,
        Temperature = request.Temperature,
        TopK = request.TopK,
        TopP = request.TopP,
        RepetitionPenalty = request.RepetitionPenalty,
        Seed = request.Seed,
        Stop = request.Stop,
        Greedy = request.Temperature == 0,
    };
}
