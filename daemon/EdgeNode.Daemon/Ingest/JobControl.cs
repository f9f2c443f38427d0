using EdgeNode.Daemon.Execution;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Offload;
using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Jobs;

namespace EdgeNode.Daemon.Ingest;

/// <summary>What a cancel request did (the MQTT cancel topic and the IoT Hub <c>cancelJob</c> method share it).</summary>
internal enum CancelOutcome
{
    /// <summary>The job was queued and now ends CANCELED.</summary>
    RemovedFromQueue,

    /// <summary>The job is running; it stops within one decode step and ends CANCELED.</summary>
    StoppingRunning,

    /// <summary>
    /// The cloud relay held the job (OFFLOADED): it ends CANCELED now, the node aborts its relay request and ignores
    /// any answer that still arrives.
    /// </summary>
    CanceledOffloaded,

    /// <summary>The job was running but is already finishing.</summary>
    AlreadyFinishing,

    /// <summary>The job already has its final outcome.</summary>
    AlreadyFinal,

    /// <summary>No job with that id is known.</summary>
    Unknown,
}

/// <summary>
/// Operator control of jobs shared by the management planes: cancel (DESIGN.md §3 cancel topic, IoT Hub
/// <c>cancelJob</c>) and drain (new jobs are refused with <see cref="DrainingCode"/> while queued ones finish).
/// </summary>
internal sealed class JobControl(StoreHost storeHost, Executor executor, OffloadWorker offload, NodeMetrics metrics, NodeSignals signals)
{
    /// <summary>The error code new jobs get while the node drains.</summary>
    public const string DrainingCode = "node_draining";

    private volatile bool _draining;

    /// <summary>True while new jobs are refused (IoT Hub <c>drain</c>; <c>resume</c> clears it).</summary>
    public bool Draining
    {
        get => _draining;
        set => _draining = value;
    }

    /// <summary>The stored record of a job, or null.</summary>
    /// <exception cref="IOException">Store I/O error.</exception>
    public JobRecord? Get(string jobId) => storeHost.Store.Get(jobId);

    /// <summary>
    /// Cancels a job: a queued one ends CANCELED at once (its outcome recorded and published like any other), a running
    /// one is stopped within one decode step by the executor, a finished or unknown one is left as it is.
    /// An OFFLOADED one (held by the cloud relay) ends CANCELED at once too: the relay API (DESIGN.md §6) has no
    /// cancel call, so the node aborts its <c>POST /v1/jobs</c> request (a relay that notices cancels the job) and an
    /// answer that still arrives is ignored (the store keeps the first final outcome: exactly one final event,
    /// DESIGN.md §4 rule 2). README "Offload to the cloud relay", Cancel, says what the relay does today.
    /// </summary>
    /// <exception cref="IOException">Store I/O error.</exception>
    public (CancelOutcome Outcome, string? Status) Cancel(string jobId)
    {
        (CancelOutcome, string?) result;
        var abandon = false;
        lock (metrics.Gate)
        {
            var record = storeHost.Store.Get(jobId);
            if (record is { Status: JobStatuses.Queued })
            {
                var payload = JobEvents.Error(jobId, JobStatuses.Canceled, JobErrorCodes.Canceled, "the job was canceled before it ran");
                storeHost.Store.Finish(jobId, JobStatuses.Canceled, payload);
                metrics.Cancelled.Inc();
                result = (CancelOutcome.RemovedFromQueue, JobStatuses.Canceled);
            }
            else if (record is { Status: JobStatuses.Offloaded })
            {
                var payload = JobEvents.Error(jobId, JobStatuses.Canceled, JobErrorCodes.Canceled,
                    "the job was canceled while the cloud relay held it; the relay request was abandoned");
                if (storeHost.Store.Finish(jobId, JobStatuses.Canceled, payload))
                {
                    metrics.Cancelled.Inc();
                }

                abandon = true;
                result = (CancelOutcome.CanceledOffloaded, JobStatuses.Canceled);
            }
            else if (record is { Status: JobStatuses.InProgress })
            {
                result = (executor.CancelRunning(jobId) ? CancelOutcome.StoppingRunning : CancelOutcome.AlreadyFinishing, record.Status);
            }
            else
            {
                result = record is null ? (CancelOutcome.Unknown, null) : (CancelOutcome.AlreadyFinal, record.Status);
            }
        }

        if (abandon)
        {
            offload.AbandonSend(jobId); // after the final status is stored: a send starting later sees it and stops
        }

        signals.OutboxChanged.Set();
        return result;
    }

    /// <summary>A short text for logs and responses.</summary>
    public static string Describe(CancelOutcome outcome, string? status) => outcome switch
    {
        CancelOutcome.RemovedFromQueue => "removed from the queue",
        CancelOutcome.StoppingRunning => "stopping the running job",
        CancelOutcome.CanceledOffloaded => "canceled while offloaded; the relay request was abandoned",
        CancelOutcome.AlreadyFinishing => "already finishing",
        CancelOutcome.AlreadyFinal => "already " + status,
        _ => "unknown job",
    };
}
