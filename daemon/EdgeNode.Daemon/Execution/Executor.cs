using System.Globalization;
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
    NodeSignals signals,
    IOptions<NodeOptions> nodeOptions,
    TimeProvider time,
    LoopHeartbeat heartbeat,
    TestHooks testHooks,
    ILogger<Executor> logger) : BackgroundService
{
    private readonly string _nodeId = nodeOptions.Value.Id;

    // Liveness for the systemd watchdog: a beat per iteration and per decoded token, idle while waiting for jobs.
    private readonly LoopMonitor _loop = heartbeat.Register("executor");

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                _loop.Beat();
                var job = storeHost.Store.TakeNext();
                if (job is null)
                {
                    _loop.Idle();
                    await signals.JobQueued.WaitAsync(TimeSpan.FromSeconds(5), time, stoppingToken);
                    continue;
                }

                // CPU-bound: run on the thread pool so the host's threads stay free. Not tied to
                // stoppingToken: a job that started is finished, then the loop stops.
                var (status, payload) = await Task.Run(() => Execute(job), CancellationToken.None);
                storeHost.Store.Finish(job.Id, status, payload);
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

    private (string Status, byte[] Payload) Execute(JobRecord job)
    {
        var request = job.Request;
        var started = time.GetUtcNow();
        var queueMs = (started - job.AcceptedAt).TotalMilliseconds;
        if (request.DeadlineMs is { } deadline && queueMs > deadline)
        {
            var message = string.Create(CultureInfo.InvariantCulture,
                $"deadline_ms {deadline} passed after {queueMs:F0} ms in the queue; the job was not run");
            Log.JobFinished(logger, job.Id, JobStatuses.TimedOut, message);
            return (JobStatuses.TimedOut, JobEvents.Error(job.Id, JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded, message));
        }

        GenerationOutcome outcome;
        try
        {
            var parameters = ToParameters(request) with { OnToken = _ => OnDecodeStep() };
            outcome = modelHost.Generator.Generate(request.Prompt, parameters, CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.JobCrashed(logger, ex, job.Id);
            return (JobStatuses.Failed, JobEvents.Error(job.Id, JobStatuses.Failed, JobErrorCodes.ModelError,
                "the model failed on this job: " + ex.Message));
        }

        if (outcome.Error is { } error)
        {
            var status = error.Code == JobErrorCodes.Canceled ? JobStatuses.Canceled : JobStatuses.Failed;
            Log.JobFinished(logger, job.Id, status, error.Code);
            return (status, JobEvents.Error(job.Id, status, error.Code, error.Message));
        }

        var result = outcome.Result!;
        var totalMs = (time.GetUtcNow() - job.AcceptedAt).TotalMilliseconds;
        var finishReason = result.FinishReason.ToString().ToLowerInvariant();
        Log.JobFinished(logger, job.Id, JobStatuses.Succeeded, finishReason);
        return (JobStatuses.Succeeded, JobEvents.Result(job.Id, result.Text, finishReason, result.PromptTokens.Count,
            result.GeneratedTokens.Count, "local", _nodeId, queueMs, result.PrefillMs, result.DecodeMs, totalMs));
    }

    private void OnDecodeStep()
    {
        _loop.Beat();
        testHooks.OnDecodeStep();
    }

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
