using EdgeNode.Shared.Jobs;

namespace EdgeNode.Daemon.Queue;

/// <summary>
/// One parsed MQTT message handed to <see cref="JobStore.CommitBatch"/>.
/// </summary>
/// <param name="Job">The validated request to accept, or null when the message was rejected.</param>
/// <param name="JobId">The job id (equal to <c>Job.Id</c> when <paramref name="Job"/> is set; the parse result's id otherwise).</param>
/// <param name="ReplyTopic">Where this job's events go (DESIGN.md §3: Response Topic, else <c>reply_to</c>, else <c>{prefix}/results/{jobId}</c>).</param>
/// <param name="CorrelationData">The MQTT 5 Correlation Data to echo, or null.</param>
/// <param name="EventPayload">The <c>accepted</c> event when <paramref name="Job"/> is set, else the <c>error</c> event.</param>
/// <param name="ReceivedAt">When the message arrived (UTC).</param>
/// <param name="Offload">True when the job is routed to the cloud relay: it is stored OFFLOADED (not QUEUED) in the
/// same transaction, before any HTTP call (DESIGN.md §5).</param>
internal sealed record IngestItem(
    JobRequest? Job,
    string JobId,
    string ReplyTopic,
    byte[]? CorrelationData,
    byte[] EventPayload,
    DateTimeOffset ReceivedAt,
    bool Offload = false);

/// <summary>What <see cref="JobStore.CommitBatch"/> did with one <see cref="IngestItem"/>.</summary>
internal enum IngestDecisionKind
{
    /// <summary>A new job: stored QUEUED (OFFLOADED when <see cref="IngestItem.Offload"/>), its <c>accepted</c> event put in the outbox.</summary>
    Accepted,

    /// <summary>The id was already known (stored earlier or earlier in the same batch): nothing was written.</summary>
    Duplicate,

    /// <summary>A rejected message: only its <c>error</c> event was put in the outbox.</summary>
    Rejected,
}

/// <summary>The decision for one item of a batch, in the batch's order.</summary>
/// <param name="Kind">Accepted, Duplicate or Rejected.</param>
/// <param name="JobId">The item's job id.</param>
/// <param name="Existing">For <see cref="IngestDecisionKind.Duplicate"/>: the stored job (its status and, when final,
/// its <see cref="JobRecord.FinalEvent"/> to send again). Null otherwise.</param>
internal sealed record IngestDecision(IngestDecisionKind Kind, string JobId, JobRecord? Existing);

/// <summary>An event waiting to be published at QoS 1, in <see cref="Seq"/> order.</summary>
/// <param name="Seq">Outbox sequence number, increasing across restarts.</param>
/// <param name="JobId">The job the event belongs to.</param>
/// <param name="Topic">The reply topic.</param>
/// <param name="CorrelationData">MQTT 5 Correlation Data to echo, or null.</param>
/// <param name="Payload">The event JSON, byte-identical on every publish.</param>
/// <param name="Durable">True when the entry is a document of the outbox collection (every outcome, and an
/// <c>accepted</c> event committed while the outbox was not mirrored); false for an <c>accepted</c> event kept in memory
/// only (see <see cref="JobStore"/>'s remarks): it is published in order with the rest, but a restart loses it.</param>
internal sealed record OutboxEntry(long Seq, string JobId, string Topic, byte[]? CorrelationData, byte[] Payload, bool Durable = true);

/// <summary>A stored job (one document of the <c>jobs</c> collection, keyed by <see cref="Id"/>).</summary>
internal sealed class JobRecord
{
    /// <summary>The job id (the idempotency key and the document's <c>_id</c>).</summary>
    public required string Id { get; init; }

    /// <summary>Acceptance sequence number: FIFO order within a priority, increasing across restarts.</summary>
    public required long Seq { get; init; }

    /// <summary>One of <see cref="JobStatuses"/>.</summary>
    public required string Status { get; init; }

    /// <summary>The route its <c>accepted</c> event named (DESIGN.md §3): <c>relay</c> when ingest routed it to the cloud
    /// relay, else <c>local</c>; a resubmission while it is pending gets that same event again, byte-identical.</summary>
    public string AcceptedRoute { get; init; } = "local";

    /// <summary>-100..100, higher runs first.</summary>
    public int Priority => Request.Priority;

    /// <summary>The validated request, as accepted.</summary>
    public required JobRequest Request { get; init; }

    /// <summary>Where the job's events go.</summary>
    public required string ReplyTopic { get; init; }

    /// <summary>MQTT 5 Correlation Data to echo, or null.</summary>
    public byte[]? CorrelationData { get; init; }

    /// <summary>When the message arrived (UTC).</summary>
    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary>When the job was committed (UTC): the origin of <c>deadline_ms</c>.</summary>
    public required DateTimeOffset AcceptedAt { get; init; }

    /// <summary>When the executor last took the job (UTC), or null if it never ran.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>When the final outcome was recorded (UTC), or null.</summary>
    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>How many times the executor took the job (a job interrupted by a crash keeps its count).</summary>
    public int Attempts { get; init; }

    /// <summary>The final <c>result</c> or <c>error</c> event, byte-identical to what was published; null until final.</summary>
    public byte[]? FinalEvent { get; init; }

    /// <summary>True when <see cref="Status"/> is final (<see cref="JobStatuses.IsFinal"/>).</summary>
    public bool IsFinal => JobStatuses.IsFinal(Status);

    /// <summary>The absolute deadline (UTC), or null when the request has no <c>deadline_ms</c>.</summary>
    public DateTimeOffset? Deadline =>
        Request.DeadlineMs is { } ms ? AcceptedAt.AddMilliseconds(ms) : null;
}

/// <summary>
/// The state directory's lock file is held by another process (or another <see cref="JobStore"/> in this one):
/// two writers on one LiteDB file silently lose writes on Linux (cases/durability.md 2 and 8).
/// </summary>
internal sealed class StoreLockedException : Exception
{
    public StoreLockedException()
        : base("The EdgeNode state directory is locked by another process.")
    {
        LockPath = "";
    }

    public StoreLockedException(string message)
        : base(message)
    {
        LockPath = "";
    }

    public StoreLockedException(string message, Exception innerException)
        : base(message, innerException)
    {
        LockPath = "";
    }

    public StoreLockedException(string lockPath, IOException innerException)
        : base($"The EdgeNode state directory is in use by another process: the lock file '{lockPath}' is held. " +
               "Stop the other edgenode instance or use another Node:StateDirectory.", innerException)
    {
        LockPath = lockPath;
    }

    /// <summary>The path of the lock file that could not be taken.</summary>
    public string LockPath { get; }
}

/// <summary>
/// What <see cref="JobStore.Quarantined"/> reports when the store found its database corrupt while running and moved it
/// aside (DESIGN.md §4 rule 4, as at start). Every lost job has been answered FAILED <c>storage_error</c> on its reply
/// topic (one outcome per job), so its sender can resubmit it.
/// </summary>
/// <param name="Directory">Where <c>jobs.db</c> and its log were moved (<c>{stateDirectory}/quarantine/jobs-{utc}/</c>).</param>
/// <param name="LostQueued">Jobs that were QUEUED in the moved file: lost with it.</param>
/// <param name="LostOffloaded">Jobs that were OFFLOADED in the moved file: lost with it (an answer from the relay is ignored).</param>
/// <param name="LostRunning">Jobs this process had taken and not yet finished: their outcome cannot be recorded
/// (<see cref="JobStore.Finish"/> returns false for them).</param>
internal sealed record StoreQuarantine(string Directory, int LostQueued, int LostOffloaded, int LostRunning);
