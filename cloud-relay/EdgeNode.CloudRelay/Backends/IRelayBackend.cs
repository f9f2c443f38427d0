using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Jobs;

namespace EdgeNode.CloudRelay.Backends;

/// <summary>What a backend run ended with.</summary>
internal enum BackendResultKind
{
    /// <summary>Text was generated: a <c>result</c> event.</summary>
    Generated,

    /// <summary>The job failed for good (model error, prompt too long, canceled): an <c>error</c> event.</summary>
    JobFailed,

    /// <summary>The backend could not take the job now (upstream down, throttled, timed out): no outcome,
    /// nothing is stored, the caller gets 502/503 and may re-send.</summary>
    Unavailable,
}

/// <summary>A backend's answer for one job. Times in ms.</summary>
internal sealed record BackendResult(
    BackendResultKind Kind,
    string Text = "",
    string FinishReason = "length",
    int PromptTokens = 0,
    int CompletionTokens = 0,
    double PrefillMs = 0,
    double DecodeMs = 0,
    GenerationError? Error = null,
    int HttpStatus = 0,
    TimeSpan? RetryAfter = null)
{
    public static BackendResult Failed(GenerationError error) => new(BackendResultKind.JobFailed, Error: error);

    public static BackendResult Unavailable(int httpStatus, string message, TimeSpan? retryAfter = null) =>
        new(BackendResultKind.Unavailable, Error: new GenerationError(JobErrorCodes.Internal, message), HttpStatus: httpStatus, RetryAfter: retryAfter);
}

/// <summary>Runs jobs for the relay: the embedded inference core or an upstream completions server.</summary>
internal interface IRelayBackend
{
    /// <summary>Backend name for logs and <c>/readyz</c>: <c>embedded</c> or <c>upstream</c>.</summary>
    string Name { get; }

    /// <summary>Null when ready to run jobs, else why not (shown by <c>/readyz</c>).</summary>
    string? NotReadyReason { get; }

    /// <summary>A refusal known before queueing (<c>prompt_too_long</c>), or null.</summary>
    JobError? Check(JobRequest job);

    /// <summary>Runs one job. At most <c>Relay:MaxConcurrentJobs</c> calls run at once.</summary>
    /// <param name="job">The validated job.</param>
    /// <param name="onToken">For <c>"stream": true</c> jobs: receives each token's text (pieces concatenate to the final text).</param>
    /// <param name="cancellationToken">Fires when every client waiting for the job has gone.</param>
    Task<BackendResult> RunAsync(JobRequest job, Action<GeneratedToken>? onToken, CancellationToken cancellationToken);
}
