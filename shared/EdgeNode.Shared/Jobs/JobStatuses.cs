namespace EdgeNode.Shared.Jobs;

/// <summary>
/// Job statuses, following the AWS IoT Jobs execution states (DESIGN.md §3) plus
/// <see cref="Offloaded"/> while the cloud relay holds the job.
/// </summary>
public static class JobStatuses
{
    /// <summary>Accepted and durable, waiting for the executor.</summary>
    public const string Queued = "QUEUED";

    /// <summary>Taken by the local executor (prefill or decode running).</summary>
    public const string InProgress = "IN_PROGRESS";

    /// <summary>Final: a <c>result</c> event was produced.</summary>
    public const string Succeeded = "SUCCEEDED";

    /// <summary>Final: the job ran (or tried to) and failed.</summary>
    public const string Failed = "FAILED";

    /// <summary>Final: the request was refused before it was queued (bad payload, queue full, storage error).</summary>
    public const string Rejected = "REJECTED";

    /// <summary>Final: the deadline passed; an expired job is never executed.</summary>
    public const string TimedOut = "TIMED_OUT";

    /// <summary>Final: canceled by the device.</summary>
    public const string Canceled = "CANCELED";

    /// <summary>Not final: the cloud relay holds the job.</summary>
    public const string Offloaded = "OFFLOADED";

    /// <summary>
    /// True for the statuses after which a job never changes again (SUCCEEDED, FAILED, REJECTED,
    /// TIMED_OUT, CANCELED).
    /// </summary>
    public static bool IsFinal(string status) =>
        status is Succeeded or Failed or Rejected or TimedOut or Canceled;
}
