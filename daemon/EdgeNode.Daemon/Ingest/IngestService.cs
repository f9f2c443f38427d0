using System.Buffers;
using EdgeNode.Daemon.Execution;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Mqtt;
using EdgeNode.Daemon.Options;
using EdgeNode.Daemon.Queue;
using EdgeNode.Daemon.Systemd;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Jobs;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Ingest;

/// <summary>
/// The ingest loop: validate -> commit to LiteDB -> PUBACK (DESIGN.md §4.1). Messages are taken from
/// the broker connection in arrival order and committed in groups (one LiteDB transaction per batch of
/// up to <c>Queue:MaxBatch</c>), then acknowledged in the same order, as MQTT requires PUBACKs in the
/// order the PUBLISHes arrived. Every message gets an event on its reply topic (DESIGN.md §3): the
/// <c>accepted</c> event, or an <c>error</c> event with a precise code; both go through the durable outbox.
/// </summary>
internal sealed class IngestService(
    BrokerConnection broker,
    StoreHost storeHost,
    ModelHost modelHost,
    NodeSignals signals,
    NodeMetrics metrics,
    IOptions<QueueOptions> queueOptions,
    IOptions<NodeOptions> nodeOptions,
    TimeProvider time,
    LoopHeartbeat heartbeat,
    JobControl jobControl,
    IEnumerable<IInboundJobSource> extraSources,
    Offload.OffloadRouter router,
    Offload.OffloadWorker offloadWorker,
    ILogger<IngestService> logger) : BackgroundService
{
    // Per batch item: the reason label when routed to the relay, else null.
    private readonly List<string?> _relayReasons = [];

    // Liveness for the systemd watchdog: idle while waiting for messages, a beat per message handled.
    private readonly LoopMonitor _loop = heartbeat.Register("ingest");

    private readonly JobLimits _limits = new() { MaxPayloadBytes = queueOptions.Value.MaxPayloadBytes };
    private readonly string _nodeId = nodeOptions.Value.Id;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var reader = MergeSources(stoppingToken);
        var max = queueOptions.Value.MaxBatch;
        var batch = new List<InboundMessage>(max);
        var items = new List<IngestItem>(max);
        var codes = new List<string?>(max);
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                _loop.Beat();
                batch.Clear();
                items.Clear();
                codes.Clear();
                while (batch.Count < max && reader.TryPeek(out var next))
                {
                    if (broker.Topics.CancelledJobId(next.Args.ApplicationMessage.Topic) is not null && batch.Count > 0)
                    {
                        break; // commit the jobs before it first: a cancel may name one of them
                    }

                    reader.TryRead(out var message);
                    _loop.Beat();
                    if (broker.Topics.CancelledJobId(message!.Args.ApplicationMessage.Topic) is { } cancelId)
                    {
                        Cancel(cancelId);
                        await AcknowledgeAsync(message, stoppingToken);
                        continue;
                    }

                    batch.Add(message);
                }

                if (batch.Count == 0)
                {
                    signals.OutboxChanged.Set();
                    _loop.Idle();
                    continue;
                }

                IReadOnlyList<IngestDecision>? decisions = null;
                try
                {
                    lock (metrics.Gate)
                    {
                        PrepareBatch(batch, items, codes);
                        decisions = storeHost.Store.CommitBatch(items);
                        signals.OutboxChanged.Set(); // committed and fsynced: the events may go out while the PUBACKs are sent
                        for (var i = 0; i < decisions.Count; i++)
                        {
                            if (decisions[i].Kind == IngestDecisionKind.Accepted)
                            {
                                metrics.Accepted.Inc();
                                router.Estimator.Arrivals.Record(); // λ counts every accepted job, offloaded ones too
                                if (items[i].Offload)
                                {
                                    metrics.RoutedToRelay.WithLabels(_relayReasons[i] ?? "overloaded").Inc();
                                    offloadWorker.JobOffloaded.Set();
                                }
                            }
                            else if (decisions[i].Kind == IngestDecisionKind.Rejected)
                            {
                                metrics.Rejected.WithLabels(codes[i] ?? JobErrorCodes.Internal).Inc();
                            }
                        }
                    }
                }
                catch (Exception ex) when (JobStore.IsStorageFault(ex))
                {
                    for (var i = items.Count; i < batch.Count; i++)
                    {
                        items.Add(Prepare(batch[i]).Item);
                    }

                    IngestLog.CommitFailed(logger, ex, items.Count);
                    metrics.StoreErrors.WithLabels("commit").Inc();
                    metrics.Rejected.WithLabels(JobErrorCodes.Storage).Inc(items.Count);
                }

                for (var i = 0; i < batch.Count; i++)
                {
                    if (decisions is null)
                    {
                        await AnswerUncommittedAsync(batch[i], items[i], stoppingToken);
                    }
                    else if (decisions[i].Kind == IngestDecisionKind.Duplicate)
                    {
                        await AnswerDuplicateAsync(items[i], decisions[i], stoppingToken);
                    }
                }

                // The answers above are QoS 1 PUBLISHes awaiting their PUBACKs: only the batch's own PUBACKs are held
                // and sent together (one send instead of one per message).
                await using (broker.BatchWrites())
                {
                    for (var i = 0; i < batch.Count; i++)
                    {
                        await AcknowledgeAsync(batch[i], stoppingToken);
                        _loop.Beat();
                    }
                }

                var acknowledgedAt = time.GetUtcNow();
                for (var i = 0; i < batch.Count; i++)
                {
                    metrics.IngestAccept.Observe(Math.Max(0, (acknowledgedAt - batch[i].ReceivedAt).TotalSeconds));
                }

                signals.JobQueued.Set();
                signals.OutboxChanged.Set();
                _loop.Idle();
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
    /// A cancel request (DESIGN.md §3, <c>{prefix}/jobs/{jobId}/cancel</c>), handled by <see cref="JobControl.Cancel"/>.
    /// </summary>
    private void Cancel(string jobId)
    {
        var (outcome, status) = jobControl.Cancel(jobId);
        IngestLog.CancelHandled(logger, jobId, JobControl.Describe(outcome, status));
    }

    /// <summary>Sends the PUBACK of a committed message on the link it came from.</summary>
    private Task AcknowledgeAsync(InboundMessage message, CancellationToken cancellationToken) =>
        message.Source is { } source ? source.AcknowledgeAsync(message, cancellationToken) : broker.AcknowledgeAsync(message, cancellationToken);

    /// <summary>
    /// The broker's inbound channel, or, when other job sources are registered (IoT Hub C2D), one channel fed by all of
    /// them; each source's arrival order is kept, so PUBACKs stay in order per link.
    /// </summary>
    private System.Threading.Channels.ChannelReader<InboundMessage> MergeSources(CancellationToken stoppingToken)
    {
        var sources = extraSources.ToList();
        if (sources.Count == 0)
        {
            return broker.Inbound;
        }

        var merged = System.Threading.Channels.Channel.CreateBounded<InboundMessage>(
            new System.Threading.Channels.BoundedChannelOptions(10_000) { SingleReader = true });
        async Task PumpAsync(System.Threading.Channels.ChannelReader<InboundMessage> from)
        {
            try
            {
                await foreach (var m in from.ReadAllAsync(stoppingToken))
                {
                    await merged.Writer.WriteAsync(m, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }
        }

        _ = PumpAsync(broker.Inbound);
        foreach (var source in sources)
        {
            _ = PumpAsync(source.Inbound);
        }

        return merged.Reader;
    }

    /// <summary>
    /// Validates each message and decides what to commit: the job, or its rejection. Runs under the metrics
    /// gate, so the queue bounds (<c>Queue:MaxJobs</c>, <c>Queue:MaxBytes</c>) are checked against a store
    /// nobody else is changing.
    /// </summary>
    private void PrepareBatch(List<InboundMessage> batch, List<IngestItem> items, List<string?> codes)
    {
        var store = storeHost.Store;
        var queuedJobs = store.CountQueued();
        var queuedBytes = store.QueuedBytes;
        var limits = queueOptions.Value;
        var inService = router.Enabled ? metrics.DepthSource?.Invoke().InFlight ?? 0 : 0;
        var offloaded = router.Enabled ? store.CountOffloaded() : 0;
        _relayReasons.Clear();
        foreach (var message in batch)
        {
            var (item, code) = Prepare(message);
            if (item.Job is null && store.Get(item.JobId) is { } known)
            {
                // An invalid message that names a known id never gets an outcome of its own: one id, one outcome
                // (DESIGN.md §3). It is answered like any resubmission of that id, with the stored outcome (or
                // its acceptance while the job is pending).
                item = item with { Job = known.Request };
                code = null;
            }

            if (item.Job is { } draining && code is null && jobControl.Draining && store.Get(draining.Id) is null)
            {
                code = JobControl.DrainingCode;
                item = item with
                {
                    Job = null,
                    EventPayload = JobEvents.Error(draining.Id, JobStatuses.Rejected, code, "the node is draining (operator request): it finishes its queue and takes no new jobs; submit elsewhere or retry after resume"),
                };
            }

            string? relayReason = null;
            if (item.Job is { } job && code is null)
            {
                var bytes = JobBytes(job);
                if (router.Enabled)
                {
                    // DESIGN.md §5: local, relay, or queue_full (the policy returns Local only when the queue has room).
                    var full = queuedJobs + 1 > limits.MaxJobs || queuedBytes + bytes > limits.MaxBytes;
                    var decision = router.Decide(queuedJobs + inService, offloaded, job.MaxNewTokens, job.DeadlineMs, full);
                    if (decision.Route == EdgeNode.Shared.Offload.OffloadRoute.Relay)
                    {
                        relayReason = decision.Reason switch
                        {
                            EdgeNode.Shared.Offload.OffloadReason.Deadline => "deadline",
                            EdgeNode.Shared.Offload.OffloadReason.QueueFull => "queue_full",
                            _ => "overloaded",
                        };
                        offloaded++;
                        item = item with { Offload = true, EventPayload = JobEvents.Accepted(job.Id, "relay", _nodeId) };
                        items.Add(item);
                        codes.Add(null);
                        _relayReasons.Add(relayReason);
                        continue;
                    }
                }

                if ((queuedJobs + 1 > limits.MaxJobs || queuedBytes + bytes > limits.MaxBytes) && store.Get(job.Id) is null)
                {
                    var reason = queuedJobs + 1 > limits.MaxJobs
                        ? $"the queue holds its maximum of {limits.MaxJobs} jobs (Queue:MaxJobs); retry later"
                        : $"the queue holds its maximum of {limits.MaxBytes} bytes (Queue:MaxBytes); retry later";
                    code = JobErrorCodes.QueueFull;
                    item = item with { Job = null, EventPayload = JobEvents.Error(job.Id, JobStatuses.Rejected, code, reason) };
                }
                else
                {
                    queuedJobs++;
                    queuedBytes += bytes;
                }
            }

            items.Add(item);
            codes.Add(code);
            _relayReasons.Add(relayReason);
        }
    }

    /// <summary>The bytes a job counts against <c>Queue:MaxBytes</c>: UTF-8 of its id, prompt and stop sequences.</summary>
    private static long JobBytes(JobRequest job)
    {
        long bytes = System.Text.Encoding.UTF8.GetByteCount(job.Id) + System.Text.Encoding.UTF8.GetByteCount(job.Prompt);
        foreach (var stop in job.Stop)
        {
            bytes += System.Text.Encoding.UTF8.GetByteCount(stop);
        }

        return bytes;
    }

    private (IngestItem Item, string? RejectionCode) Prepare(InboundMessage message)
    {
        var m = message.Args.ApplicationMessage;
        var payload = m.Payload;
        var parsed = payload.IsSingleSegment
            ? JobParser.Parse(payload.FirstSpan, _limits, NewId)
            : JobParser.Parse(payload.ToArray(), _limits, NewId);
        // A Response Topic with wildcards is a client error (MQTT 5 §3.3.2.3.5): nothing can be published there, so the
        // job is refused and the answer goes to the next reply topic of DESIGN.md §3 instead.
        var responseTopic = m.ResponseTopic;
        var badResponseTopic = !string.IsNullOrEmpty(responseTopic) && responseTopic.Any(c => c is '+' or '#' || char.IsControl(c));
        if (badResponseTopic)
        {
            responseTopic = null;
        }

        var replyTopic = message.Source is { } source ? source.ReplyTopic(parsed.Id)
            : !string.IsNullOrEmpty(responseTopic) ? responseTopic
            : parsed.ReplyTo ?? broker.Topics.DefaultReply(parsed.Id);
        var loopingReply = message.Source is null && broker.Topics.IsNodeTopic(replyTopic);
        if (loopingReply)
        {
            replyTopic = broker.Topics.DefaultReply(parsed.Id); // the refusal must not loop back either
        }
        var correlation = m.CorrelationData is { Length: > 0 } ? m.CorrelationData : null;

        var job = parsed.Job;
        var error = parsed.Error;
        if (job is not null && badResponseTopic)
        {
            error = new JobError(JobErrorCodes.InvalidRequest, "the MQTT 5 response topic must be a topic name without '+', '#' or control characters");
            job = null;
        }

        if (job is not null && loopingReply)
        {
            error = new JobError(JobErrorCodes.InvalidRequest,
                "the reply topic (response topic or reply_to) must not be one of this node's job, cancel or status topics: the node would read its own events back as jobs");
            job = null;
        }

        if (job is not null)
        {
            var promptTokens = Gpt2Tokenizer.Shared.CountTokens(job.Prompt);
            var fits = modelHost.Generator.CheckFits(promptTokens, job.MaxNewTokens);
            if (fits is not null)
            {
                error = new JobError(fits.Code, fits.Message);
                job = null;
            }
        }

        var eventPayload = job is not null
            ? JobEvents.Accepted(job.Id, "local", _nodeId)
            : JobEvents.Error(parsed.Id, JobStatuses.Rejected, error!.Code, error.Message);
        return (new IngestItem(job, parsed.Id, replyTopic, correlation, eventPayload, message.ReceivedAt), job is null ? error!.Code : null);
    }

    private async Task AnswerDuplicateAsync(IngestItem item, IngestDecision decision, CancellationToken cancellationToken)
    {
        // A resubmitted id never runs twice (DESIGN.md §3): the sender gets the stored outcome again,
        // or, while the first submission is still pending, its acceptance again.
        var payload = decision.Existing?.FinalEvent ?? JobEvents.Accepted(item.JobId, decision.Existing?.AcceptedRoute ?? "local", _nodeId);
        await PublishBestEffortAsync(item.ReplyTopic, payload, item.CorrelationData, cancellationToken);
    }

    private async Task AnswerUncommittedAsync(InboundMessage message, IngestItem item, CancellationToken cancellationToken)
    {
        // Not committed means not accepted: tell the sender at once instead of leaving it waiting.
        _ = message;
        var payload = JobEvents.Error(item.JobId, JobStatuses.Rejected, JobErrorCodes.Storage,
            "the node could not store the job (storage error); nothing was accepted, retry later");
        await PublishBestEffortAsync(item.ReplyTopic, payload, item.CorrelationData, cancellationToken);
    }

    private async Task PublishBestEffortAsync(string topic, byte[] payload, byte[]? correlation, CancellationToken cancellationToken)
    {
        try
        {
            // A reply to another source's job (IoT Hub D2C) goes out on that source's link, not to the broker.
            if (extraSources.OfType<Outbox.IOutboxRoute>().FirstOrDefault(r => r.Handles(topic)) is { } route)
            {
                await route.PublishAsync(topic, payload, cancellationToken);
            }
            else
            {
                await broker.PublishAsync(topic, payload, correlation, retain: false, cancellationToken);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            IngestLog.PublishFailed(logger, topic, ex.Message);
        }
    }

    private string NewId() => _nodeId + "-" + Guid.CreateVersion7(time.GetUtcNow()).ToString("N");
}

/// <summary>Log messages of the ingest feature (event ids 400-499).</summary>
internal static partial class IngestLog
{
    [LoggerMessage(400, LogLevel.Error, "Could not commit {Count} received job(s) to the store; they are answered with storage_error")]
    public static partial void CommitFailed(ILogger logger, Exception exception, int count);

    [LoggerMessage(401, LogLevel.Warning, "Publishing to {Topic} failed: {Reason}")]
    public static partial void PublishFailed(ILogger logger, string topic, string reason);

    [LoggerMessage(402, LogLevel.Information, "Cancel request for job {JobId}: {Outcome}")]
    public static partial void CancelHandled(ILogger logger, string jobId, string outcome);
}

/// <summary>
/// A source of job messages besides the data-plane broker (e.g. IoT Hub cloud-to-device messages), fed into the same
/// ingest pipeline: validated, committed, then acknowledged on the source's own link.
/// </summary>
internal interface IInboundJobSource
{
    /// <summary>Received messages in arrival order; each has <see cref="InboundMessage.Source"/> set to this source.</summary>
    System.Threading.Channels.ChannelReader<InboundMessage> Inbound { get; }

    /// <summary>Sends the PUBACK of a committed message (only on the connection that delivered it).</summary>
    Task AcknowledgeAsync(InboundMessage message, CancellationToken cancellationToken);

    /// <summary>The reply topic of a job from this source (the request's <c>reply_to</c> is not used).</summary>
    string ReplyTopic(string jobId);
}
