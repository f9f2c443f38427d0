using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using EdgeNode.CloudRelay.Auth;
using EdgeNode.CloudRelay.Backends;
using EdgeNode.CloudRelay.Metrics;
using EdgeNode.CloudRelay.Options;
using EdgeNode.Shared.Jobs;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Jobs;

/// <summary>
/// <c>POST /v1/jobs</c> (DESIGN.md §6): the job JSON of DESIGN.md §3 in, the job's final event out.
/// </summary>
/// <remarks>
/// <para>Checks in order: device token (401), device quota (429 + Retry-After), body size (413 with a
/// <c>payload_too_large</c> error event), validation by the shared <see cref="JobParser"/> (400 with the same
/// <c>error</c> event a node would publish), the model's context (400 <c>prompt_too_long</c>), the stored outcome
/// of a re-send (same device and id: the stored bytes again), the queue (503 + Retry-After when full).</para>
/// <para>Answers: with <c>Accept: application/json</c> (default) the final event as the body: 200 for a job
/// that ran (<c>result</c>, or <c>error</c> FAILED / TIMED_OUT), 400/413 for REJECTED. With
/// <c>Accept: text/event-stream</c>, once the job is admitted: 200 and Server-Sent Events
/// <c>event: accepted</c>, <c>event: token</c> (stream jobs), then <c>event: result</c> or <c>event: error</c>,
/// each <c>data:</c> line holding the event's JSON, the final one byte-identical to the JSON answer. If the
/// backend fails after the stream started the connection is aborted without a final event (nothing stored:
/// re-send). Refusals that are not job outcomes (401, 429, 503, 502) carry
/// <c>{"error":{"code":..,"message":..}}</c> without a <c>type</c>.</para>
/// </remarks>
internal static class JobsEndpoint
{
    private static readonly byte[] EventPrefix = "event: "u8.ToArray();
    private static readonly byte[] DataPrefix = "\ndata: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();

    public static async Task HandleAsync(
        HttpContext context,
        DeviceAuthenticator authenticator,
        DeviceQuota quota,
        RelayJobs jobs,
        IRelayBackend backend,
        RelayMetrics metrics,
        IOptions<RelayOptions> options)
    {
        var relay = options.Value;
        var auth = authenticator.Authenticate(context.Request.Headers.Authorization);
        if (auth.DeviceId is not { } deviceId)
        {
            metrics.AuthFailures.WithLabels(auth.Failure!).Inc();
            context.Response.Headers.WWWAuthenticate = "SharedAccessSignature";
            await RefuseAsync(context, metrics, 401, "unauthorized", "a valid SharedAccessSignature token of a known device is required (" + auth.Failure + ")", null);
            return;
        }

        if (quota.TryTake(deviceId) is { } wait)
        {
            metrics.Throttled.WithLabels("quota").Inc();
            await RefuseAsync(context, metrics, 429, "quota_exceeded", "this device is over its requests-per-minute quota", wait);
            return;
        }

        var body = await ReadBodyAsync(context.Request, relay.MaxBodyBytes, context.RequestAborted);
        var parse = body is null
            ? new JobParseResult(null, new JobError(JobErrorCodes.PayloadTooLarge, $"payload must be at most {relay.MaxBodyBytes} bytes"), NewId(), null)
            : JobParser.Parse(body, new JobLimits { MaxPayloadBytes = relay.MaxBodyBytes }, NewId);
        if (!parse.IsValid)
        {
            var status = parse.Error.Code == JobErrorCodes.PayloadTooLarge ? 413 : 400;
            await WriteJsonAsync(context, metrics, status, JobEvents.Rejected(parse));
            return;
        }

        var job = parse.Job;
        if (backend.Check(job) is { } refusal)
        {
            await WriteJsonAsync(context, metrics, 400, JobEvents.Error(job.Id, JobStatuses.Rejected, refusal.Code, refusal.Message));
            return;
        }

        var sse = context.Request.Headers.Accept.Any(a => a?.Contains("text/event-stream", StringComparison.OrdinalIgnoreCase) == true);
        var accepted = JobEvents.Accepted(job.Id, "relay", relay.NodeId);
        var streamStarted = false;

        // A job abandoned by all its earlier clients is forgotten; the loop then starts it afresh.
        while (true)
        {
            var ticket = jobs.Join(deviceId, job);
            if (ticket.Stored is { } stored)
            {
                metrics.Replays.Inc();
                await ReplyAsync(context, metrics, sse, streamStarted, accepted, stored);
                return;
            }

            var execution = ticket.Execution!;
            if (!ticket.IsOwner)
            {
                metrics.Replays.Inc();
            }

            // Leave once, whether Kestrel reports the abort or a write finds the connection gone.
            var left = 0;
            void LeaveOnce()
            {
                if (Interlocked.Exchange(ref left, 1) == 0)
                {
                    jobs.Leave(execution);
                }
            }

            using var registration = context.RequestAborted.Register(LeaveOnce);
            if (ticket.IsOwner)
            {
                if (sse && job.Stream)
                {
                    execution.Tokens = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
                }

                if (!jobs.Start(execution))
                {
                    var busy = execution.Completion.Task.Result;
                    await RefuseAsync(context, metrics, busy.HttpStatus, "relay_busy", busy.Message!, busy.RetryAfter);
                    return;
                }
            }

            if (sse && !streamStarted)
            {
                await StartStreamAsync(context, metrics);
                await WriteEventAsync(context.Response, "accepted", accepted, context.RequestAborted);
                streamStarted = true;
            }

            if (ticket.IsOwner && execution.Tokens is { } tokens)
            {
                try
                {
                    await foreach (var token in tokens.Reader.ReadAllAsync(context.RequestAborted))
                    {
                        if (!await WriteEventAsync(context.Response, "token", token, context.RequestAborted))
                        {
                            LeaveOnce();
                            return;
                        }
                    }
                }
                catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
                {
                    return;
                }
            }

            JobReply reply;
            try
            {
                reply = await execution.Completion.Task.WaitAsync(context.RequestAborted);
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                return;
            }

            if (reply.Outcome is { } outcome)
            {
                await ReplyAsync(context, metrics, sse, streamStarted, accepted, outcome);
                return;
            }

            if (reply.Abandoned)
            {
                continue;
            }

            if (reply.HttpStatus == 503)
            {
                metrics.Throttled.WithLabels("upstream").Inc();
            }

            if (streamStarted)
            {
                // Headers are gone: end the stream without a final event, so the client knows to re-send.
                context.Abort();
                return;
            }

            await RefuseAsync(context, metrics, reply.HttpStatus, reply.HttpStatus == 503 ? "relay_busy" : "backend_unavailable", reply.Message ?? "", reply.RetryAfter);
            return;
        }
    }

    private static string NewId() => "relay-" + Guid.NewGuid().ToString("N");

    /// <summary>The body, or null when it is longer than <paramref name="limit"/> bytes.</summary>
    private static async Task<byte[]?> ReadBodyAsync(HttpRequest request, int limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
        {
            return null;
        }

        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
            {
                buffer.Write(chunk, 0, read);
                if (buffer.Length > limit)
                {
                    return null;
                }
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return null;
        }

        return buffer.ToArray();
    }

    private static async Task ReplyAsync(HttpContext context, RelayMetrics metrics, bool sse, bool streamStarted, byte[] accepted, StoredOutcome outcome)
    {
        if (!sse)
        {
            await WriteJsonAsync(context, metrics, outcome.HttpStatus, outcome.Event);
            return;
        }

        if (!streamStarted)
        {
            await StartStreamAsync(context, metrics);
            await WriteEventAsync(context.Response, "accepted", accepted, context.RequestAborted);
        }

        var type = outcome.Status == JobStatuses.Succeeded ? "result" : "error";
        await WriteEventAsync(context.Response, type, outcome.Event, context.RequestAborted);
    }

    private static async Task StartStreamAsync(HttpContext context, RelayMetrics metrics)
    {
        metrics.Requests.WithLabels("200").Inc();
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        await context.Response.StartAsync(context.RequestAborted);
    }

    /// <summary>Writes one SSE event and flushes it; false when the connection is gone (the transport stopped reading).</summary>
    private static async Task<bool> WriteEventAsync(HttpResponse response, string type, byte[] json, CancellationToken cancellationToken)
    {
        // One event per job event: "event: {type}\ndata: {json}\n\n" (JSON has no raw newlines).
        var writer = response.BodyWriter;
        writer.Write(EventPrefix);
        writer.Write(Encoding.UTF8.GetBytes(type));
        writer.Write(DataPrefix);
        writer.Write(json);
        writer.Write(EventEnd);
        var flushed = await writer.FlushAsync(cancellationToken);
        return !flushed.IsCompleted && !flushed.IsCanceled && !cancellationToken.IsCancellationRequested;
    }

    private static async Task WriteJsonAsync(HttpContext context, RelayMetrics metrics, int status, byte[] json)
    {
        metrics.Requests.WithLabels(status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = json.Length;
        await context.Response.Body.WriteAsync(json, context.RequestAborted);
    }

    private static Task RefuseAsync(HttpContext context, RelayMetrics metrics, int status, string code, string message, TimeSpan? retryAfter)
    {
        if (retryAfter is { } wait)
        {
            // Retry-After: delay-seconds (RFC 9110 §10.2.3), rounded up so a client never comes back early.
            context.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        var body = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, Dictionary<string, string>>
        {
            ["error"] = new() { ["code"] = code, ["message"] = message },
        });
        return WriteJsonAsync(context, metrics, status, body);
    }
}
