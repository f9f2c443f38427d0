namespace EdgeNode.Shared.Jobs;

/// <summary>
/// The <c>error.code</c> values of an <c>error</c> event (DESIGN.md §3). Devices branch on these
/// strings, so they are a contract: add codes, never rename them.
/// </summary>
public static class JobErrorCodes
{
    /// <summary>The payload is not UTF-8 JSON (or nests deeper than 64 levels).</summary>
    public const string InvalidJson = "invalid_json";

    /// <summary>The payload is JSON but breaks a field rule; the message names the field and the rule.</summary>
    public const string InvalidRequest = "invalid_request";

    /// <summary>The payload is longer than <see cref="JobLimits.MaxPayloadBytes"/>.</summary>
    public const string PayloadTooLarge = "payload_too_large";

    /// <summary>The prompt's GPT-2 tokens plus <c>max_new_tokens</c> exceed n_positions (1024).</summary>
    public const string PromptTooLong = "prompt_too_long";

    /// <summary>The durable queue is full (jobs or bytes) and the job cannot be offloaded.</summary>
    public const string QueueFull = "queue_full";

    /// <summary>The job's <c>deadline_ms</c>, counted from acceptance, passed before it could run or finish.</summary>
    public const string DeadlineExceeded = "deadline_exceeded";

    /// <summary>The job was canceled on <c>{prefix}/jobs/{jobId}/cancel</c>.</summary>
    public const string Canceled = "canceled";

    /// <summary>The model failed while running the job (ONNX Runtime error, poison job after N attempts).</summary>
    public const string ModelError = "model_error";

    /// <summary>A bug in the node; the job is failed rather than retried forever.</summary>
    public const string Internal = "internal";

    /// <summary>The job started <c>Queue:MaxAttempts</c> runs without finishing (the process died each time): it fails as
    /// poison so that it never blocks the queue (DESIGN.md §4.3).</summary>
    public const string AttemptsExhausted = "attempts_exhausted";

    /// <summary>The durable store could not take the job (disk full, I/O error); nothing was queued.</summary>
    public const string Storage = "storage_error";
}
