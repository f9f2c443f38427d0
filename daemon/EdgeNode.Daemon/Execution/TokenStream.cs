using System.Threading.Channels;
using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Jobs;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Execution;

/// <summary>
/// Publishes the <c>token</c> events of a job with <c>"stream": true</c> (DESIGN.md §3:
/// <c>{"type":"token","id":..,"seq":n,"text":".."}</c>, seq from 0) on its reply topic (through
/// <see cref="Outbox.OutboxPublisher.PublishLiveAsync"/>: the broker, or IoT Hub D2C for a C2D job), from a task of its own so
/// that decoding never waits for the broker. Only non-empty pieces are sent: the inference core holds back the
/// bytes of a character split across tokens, so no event carries a broken character and the texts concatenate
/// to the result's text. Token events are best effort (not in the outbox); the final event is durable.
/// </summary>
internal sealed class TokenStream
{
    private readonly Channel<byte[]> _events = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly string _jobId;
    private readonly Task _publisher;
    private int _seq;

    /// <param name="outbox">Sends each event on the link its reply topic belongs to.</param>
    /// <param name="job">The job; its reply topic and correlation data are used.</param>
    /// <param name="logger">For publish failures.</param>
    /// <param name="acceptedDelivered">Completes when the job's <c>accepted</c> event has been published.</param>
    public TokenStream(Outbox.OutboxPublisher outbox, JobRecord job, Func<Task> acceptedDelivered, ILogger logger)
    {
        _jobId = job.Id;
        OnToken = token =>
        {
            if (token.Text.Length > 0)
            {
                _events.Writer.TryWrite(JobEvents.Token(_jobId, _seq++, token.Text));
            }
        };
        _publisher = Task.Run(async () =>
        {
            await acceptedDelivered(); // events of a job reach the device in order: accepted, token..., result
            var dropped = 0;
            string? reason = null;
            await foreach (var payload in _events.Reader.ReadAllAsync())
            {
                if (reason is not null)
                {
                    dropped++; // after a failure (the link is down) the rest are dropped: best effort, and no stall
                    continue;
                }

                try
                {
                    await outbox.PublishLiveAsync(job.ReplyTopic, payload, job.CorrelationData, CancellationToken.None);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    reason = ex.Message;
                    dropped++;
                }
            }

            if (reason is not null)
            {
                Log.TokenPublishFailed(logger, _jobId, dropped, reason);
            }
        });
    }

    /// <summary>The generator's per-token callback.</summary>
    public Action<GeneratedToken> OnToken { get; }

    /// <summary>Waits until every token event was handed to the broker.</summary>
    public Task CompleteAsync()
    {
        _events.Writer.TryComplete();
        return _publisher;
    }
}
