using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Polly;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace EdgeNode.Shared.Offload;

/// <summary>Settings of a <see cref="RelayClient"/> (the daemon binds them from <c>Offload:*</c>, DESIGN.md §8).</summary>
public sealed record RelayClientOptions
{
    /// <summary>The relay's base URL, e.g. <c>http://127.0.0.1:9700</c>; jobs go to <c>{RelayUrl}/v1/jobs</c>.</summary>
    public required Uri RelayUrl { get; init; }

    /// <summary>This device's id at the relay (<c>Relay:Devices:{id}</c> there).</summary>
    public required string DeviceId { get; init; }

    /// <summary>This device's key: the raw bytes of the Base64 key configured at the relay.</summary>
    public required ReadOnlyMemory<byte> DeviceKey { get; init; }

    /// <summary>The relay's <c>Relay:Audience</c>; the signed resource is <c>{Audience}/devices/{DeviceId}</c>.</summary>
    public string Audience { get; init; } = SharedAccessSignature.DefaultAudience;

    /// <summary>Lifetime of the SAS tokens made for requests (renewed when a quarter is left). Default 1 h.</summary>
    public TimeSpan TokenLifetime { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Timeout of one request, response read included. Default 60 s.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Circuit breaker: failure ratio over <see cref="SamplingDuration"/> that opens it. Default 0.5.</summary>
    public double FailureRatio { get; init; } = 0.5;

    /// <summary>Circuit breaker: requests needed in the sampling window before it may open. Default 3 (Polly's minimum is 2).</summary>
    public int MinimumThroughput { get; init; } = 3;

    /// <summary>Circuit breaker: the sampling window. Default 30 s.</summary>
    public TimeSpan SamplingDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Circuit breaker: how long it stays open before one probe request is let through (half-open). Default 15 s.</summary>
    public TimeSpan BreakDuration { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Pause used when a 429/503 has no usable <c>Retry-After</c>. Default 1 s.</summary>
    public TimeSpan DefaultRetryAfter { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest response body read (JSON mode) or SSE event accepted, bytes. Default 1 MiB.</summary>
    public int MaxResponseBytes { get; init; } = 1 << 20;
}

/// <summary>How a relay submission ended (<see cref="RelayOutcome.Kind"/>).</summary>
public enum RelayOutcomeKind
{
    /// <summary>The relay returned the job's final event (<c>result</c> or <c>error</c>): the job is done; store <see cref="RelayOutcome.Event"/>.</summary>
    Completed,

    /// <summary>429 or 503: the relay (or this device's quota) is busy; wait <see cref="RelayOutcome.RetryAfter"/>. Run the job locally meanwhile.</summary>
    Throttled,

    /// <summary>Not sent: the circuit is open or a Retry-After pause is running. Run the job locally.</summary>
    Unavailable,

    /// <summary>Network error, timeout, 5xx, 401/403 or a malformed answer. Run the job locally (the relay may have run it: the id keeps this harmless).</summary>
    Failed,
}

/// <summary>The outcome of <see cref="RelayClient.SubmitAsync"/>: expected failures are values.</summary>
/// <param name="Kind">What happened.</param>
/// <param name="Event">For <see cref="RelayOutcomeKind.Completed"/>: the final event's UTF-8 JSON bytes exactly as the relay sent them.</param>
/// <param name="Status">For Completed: the event's <c>status</c> (SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED).</param>
/// <param name="HttpStatus">The HTTP status code when there was an answer.</param>
/// <param name="RetryAfter">For Throttled and Unavailable (pause): how long to wait before offloading again.</param>
/// <param name="Error">A short description for logs and metrics (never contains the token).</param>
public sealed record RelayOutcome(RelayOutcomeKind Kind, byte[]? Event, string? Status, int? HttpStatus, TimeSpan? RetryAfter, string? Error);

/// <summary>The circuit state of a <see cref="RelayClient"/> (Polly's, for metrics and status).</summary>
public enum RelayCircuitState
{
    /// <summary>Requests flow.</summary>
    Closed,

    /// <summary>Failures opened the circuit: nothing is sent until the break duration ends.</summary>
    Open,

    /// <summary>The break ended: the next request is a probe that closes or re-opens the circuit.</summary>
    HalfOpen,
}

/// <summary>
/// HTTP client of the cloud relay's <c>POST /v1/jobs</c> (DESIGN.md §6) for the daemon's offload path:
/// signs every request with a SAS token (<see cref="SharedAccessSignature"/>), sends the job JSON, and maps
/// the answer to a <see cref="RelayOutcome"/>. A Polly circuit breaker stops sending while the relay fails
/// (5xx other than 503, 401/403, network errors, timeouts) and lets one probe through after
/// <see cref="RelayClientOptions.BreakDuration"/>; 429 and 503 pause sending for their <c>Retry-After</c>
/// (RFC 9110 §10.2.3: delay-seconds or an HTTP-date).
/// </summary>
/// <remarks>
/// Idempotency: the relay keeps each device's outcomes by job id for its retention window, so re-sending the
/// same job (same <c>id</c> in the JSON) after a crash or a timeout returns the stored outcome and never runs
/// the job twice. The JSON must therefore carry its <c>id</c>. Deadlines: the relay counts <c>deadline_ms</c>
/// from its own acceptance, so a caller should send the time left. Thread-safe.
/// </remarks>
public sealed class RelayClient
{
    private static readonly MediaTypeHeaderValue JsonType = new("application/json");
    private readonly HttpClient _http;
    private readonly RelayClientOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Uri _jobsUri;
    private readonly string _resource;
    private readonly CircuitBreakerStateProvider _circuit = new();
    private readonly ResiliencePipeline<Attempt> _pipeline;
    private readonly Lock _lock = new();
    private string? _token;
    private DateTimeOffset _tokenRenewAt;
    private DateTimeOffset _pausedUntil;

    /// <param name="http">The HttpClient to use (its own Timeout should be infinite or longer than <see cref="RelayClientOptions.RequestTimeout"/>).</param>
    /// <param name="options">Relay address, device credentials, circuit breaker settings.</param>
    /// <param name="time">Clock for tokens, pauses and the circuit breaker.</param>
    /// <param name="logger">Optional logger (event ids 900-919).</param>
    /// <exception cref="ArgumentException">The options are incomplete (empty id or key).</exception>
    public RelayClient(HttpClient http, RelayClientOptions options, TimeProvider time, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentException.ThrowIfNullOrEmpty(options.DeviceId);
        if (options.DeviceKey.IsEmpty)
        {
            throw new ArgumentException("DeviceKey must not be empty.", nameof(options));
        }

        _http = http;
        _options = options;
        _time = time;
        _logger = logger ?? NullLogger.Instance;
        _jobsUri = new Uri(options.RelayUrl, "v1/jobs");
        _resource = SharedAccessSignature.DeviceResource(options.Audience, options.DeviceId);
        _pipeline = new ResiliencePipelineBuilder<Attempt> { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<Attempt>
            {
                FailureRatio = options.FailureRatio,
                MinimumThroughput = options.MinimumThroughput,
                SamplingDuration = options.SamplingDuration,
                BreakDuration = options.BreakDuration,
                StateProvider = _circuit,
                ShouldHandle = new PredicateBuilder<Attempt>()
                    .Handle<HttpRequestException>()
                    .Handle<TimeoutRejectedException>()
                    .Handle<IOException>()
                    .Handle<JsonException>()
                    .HandleResult(a => a.Final is null && !IsThrottle(a.Status)),
                OnOpened = args =>
                {
                    RelayLog.CircuitOpened(_logger, args.BreakDuration.TotalSeconds);
                    return ValueTask.CompletedTask;
                },
                OnClosed = _ =>
                {
                    RelayLog.CircuitClosed(_logger);
                    return ValueTask.CompletedTask;
                },
            })
            .AddTimeout(options.RequestTimeout)
            .Build();
    }

    /// <summary>The circuit breaker's state now.</summary>
    public RelayCircuitState CircuitState => _circuit.CircuitState switch
    {
        Polly.CircuitBreaker.CircuitState.Closed => RelayCircuitState.Closed,
        Polly.CircuitBreaker.CircuitState.HalfOpen => RelayCircuitState.HalfOpen,
        _ => RelayCircuitState.Open,
    };

    /// <summary>The end of the current Retry-After pause, or null when none is running.</summary>
    public DateTimeOffset? PausedUntil
    {
        get
        {
            lock (_lock)
            {
                return _pausedUntil > _time.GetUtcNow() ? _pausedUntil : null;
            }
        }
    }

    /// <summary>True when a submission would be sent now: no Retry-After pause, circuit not open.</summary>
    public bool IsAvailable => PausedUntil is null && CircuitState != RelayCircuitState.Open;

    /// <summary>
    /// Sends one job to the relay and waits for its final event.
    /// </summary>
    /// <param name="jobJson">The job request JSON (DESIGN.md §3) with its <c>id</c>.</param>
    /// <param name="jobId">The job's id; the final event must carry it.</param>
    /// <param name="onEvent">Null for a JSON answer; else the request asks for Server-Sent Events and this is
    /// called with each non-final event's JSON bytes (<c>accepted</c>, <c>token</c>) as it arrives.</param>
    /// <param name="cancellationToken">Aborts the request (shutdown); then <see cref="OperationCanceledException"/> is thrown.</param>
    /// <returns>Completed with the final event bytes, or why not (never throws for relay or network failures).</returns>
    public async Task<RelayOutcome> SubmitAsync(ReadOnlyMemory<byte> jobJson, string jobId, Action<byte[]>? onEvent = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        if (PausedUntil is { } until)
        {
            return new RelayOutcome(RelayOutcomeKind.Unavailable, null, null, null, until - _time.GetUtcNow(), "paused by Retry-After");
        }

        Attempt attempt;
        try
        {
            attempt = await _pipeline.ExecuteAsync(
                static async (state, token) => await state.Self.SendAsync(state.Json, state.JobId, state.OnEvent, token),
                (Self: this, Json: jobJson, JobId: jobId, OnEvent: onEvent), cancellationToken);
        }
        catch (BrokenCircuitException ex)
        {
            return new RelayOutcome(RelayOutcomeKind.Unavailable, null, null, null, ex.RetryAfter, "circuit open");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is HttpRequestException or TimeoutRejectedException or IOException or JsonException or OperationCanceledException)
        {
            RelayLog.RequestFailed(_logger, jobId, ex.GetType().Name, ex.Message);
            return new RelayOutcome(RelayOutcomeKind.Failed, null, null, null, null, ex is TimeoutRejectedException ? "timeout" : ex.Message);
        }

        if (attempt.Final is not null)
        {
            return new RelayOutcome(RelayOutcomeKind.Completed, attempt.Final, attempt.FinalStatus, attempt.Status, null, null);
        }

        if (IsThrottle(attempt.Status))
        {
            var wait = attempt.RetryAfter ?? _options.DefaultRetryAfter;
            lock (_lock)
            {
                var pauseEnd = _time.GetUtcNow() + wait;
                if (pauseEnd > _pausedUntil)
                {
                    _pausedUntil = pauseEnd;
                }
            }

            RelayLog.Throttled(_logger, jobId, attempt.Status, wait.TotalSeconds);
            return new RelayOutcome(RelayOutcomeKind.Throttled, null, null, attempt.Status, wait, attempt.Error);
        }

        RelayLog.RequestFailed(_logger, jobId, "HTTP " + attempt.Status.ToString(CultureInfo.InvariantCulture), attempt.Error ?? "");
        return new RelayOutcome(RelayOutcomeKind.Failed, null, null, attempt.Status, null, attempt.Error);
    }

    private static bool IsThrottle(int status) => status is 429 or 503;

    private string CurrentToken()
    {
        var now = _time.GetUtcNow();
        lock (_lock)
        {
            if (_token is null || now >= _tokenRenewAt)
            {
                var expiry = now + _options.TokenLifetime;
                _token = SharedAccessSignature.Create(_resource, _options.DeviceKey.Span, expiry.ToUnixTimeSeconds(), _options.DeviceId);
                _tokenRenewAt = now + (_options.TokenLifetime * 0.75);
            }

            return _token;
        }
    }

    private async Task<Attempt> SendAsync(ReadOnlyMemory<byte> json, string jobId, Action<byte[]>? onEvent, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, _jobsUri);
        request.Headers.TryAddWithoutValidation("Authorization", CurrentToken());
        request.Headers.Accept.ParseAdd(onEvent is null ? "application/json" : "text/event-stream");
        request.Content = new ReadOnlyMemoryContent(json);
        request.Content.Headers.ContentType = JsonType;
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        var status = (int)response.StatusCode;
        if (IsThrottle(status))
        {
            return new Attempt(status, null, null, RetryAfter(response), "HTTP " + status.ToString(CultureInfo.InvariantCulture));
        }

        var isEventStream = response.Content.Headers.ContentType?.MediaType == "text/event-stream";
        if (response.IsSuccessStatusCode && isEventStream)
        {
            return await ReadEventStreamAsync(response, status, jobId, onEvent, cancellationToken);
        }

        // Outcomes come as 200 (ran) or 400/413 (refused by validation); anything else is a relay failure.
        if (status is 200 or 400 or 413)
        {
            var body = await ReadBoundedAsync(response.Content, cancellationToken);
            if (TryFinalEvent(body, jobId, out var finalStatus))
            {
                return new Attempt(status, body, finalStatus, null, null);
            }

            return new Attempt(status, null, null, null, "the answer is not a final event of this job");
        }

        return new Attempt(status, null, null, null, "HTTP " + status.ToString(CultureInfo.InvariantCulture));
    }

    private async Task<Attempt> ReadEventStreamAsync(HttpResponseMessage response, int status, string jobId, Action<byte[]>? onEvent, CancellationToken cancellationToken)
    {
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var data = new StringBuilder();
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
            {
                if (data.Length == 0)
                {
                    continue;
                }

                var bytes = Encoding.UTF8.GetBytes(data.ToString());
                data.Clear();
                if (TryFinalEvent(bytes, jobId, out var finalStatus))
                {
                    return new Attempt(status, bytes, finalStatus, null, null);
                }

                onEvent?.Invoke(bytes);
                continue;
            }

            if (line.StartsWith("data:", StringComparison.Ordinal))
            {
                // SSE (WHATWG HTML §9.2.6): one optional space after the colon; several data lines join with "\n".
                var value = line.AsSpan(5);
                if (value.StartsWith(" "))
                {
                    value = value[1..];
                }

                if (data.Length > 0)
                {
                    data.Append('\n');
                }

                data.Append(value);
                if (data.Length > _options.MaxResponseBytes)
                {
                    return new Attempt(status, null, null, null, "an event is larger than MaxResponseBytes");
                }
            }
        }

        return new Attempt(status, null, null, null, "the event stream ended without a final event");
    }

    private async Task<byte[]> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
    {
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await stream.ReadAsync(chunk, cancellationToken)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > _options.MaxResponseBytes)
            {
                throw new IOException("The relay's answer is larger than MaxResponseBytes.");
            }
        }

        return buffer.ToArray();
    }

    /// <summary>True when <paramref name="json"/> is a <c>result</c> or <c>error</c> event of job <paramref name="jobId"/>.</summary>
    private static bool TryFinalEvent(byte[] json, string jobId, out string? status)
    {
        status = null;
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object ||
                !root.TryGetProperty("type", out var type) || type.GetString() is not ("result" or "error") ||
                !root.TryGetProperty("id", out var id) || id.GetString() != jobId)
            {
                return false;
            }

            status = root.TryGetProperty("status", out var s) ? s.GetString() : null;
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Retry-After as delay-seconds or an HTTP-date (RFC 9110 §10.2.3); null when absent or unusable.</summary>
    private TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        var header = response.Headers.RetryAfter;
        if (header?.Delta is { } delta && delta >= TimeSpan.Zero)
        {
            return delta;
        }

        if (header?.Date is { } date)
        {
            var wait = date - _time.GetUtcNow();
            return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
        }

        return null;
    }

    /// <summary>One HTTP exchange: the final event (when the relay produced one), else the status and why not.</summary>
    private readonly record struct Attempt(int Status, byte[]? Final, string? FinalStatus, TimeSpan? RetryAfter, string? Error);
}

/// <summary>Log messages of the offload feature (event ids 900-919).</summary>
internal static partial class RelayLog
{
    [LoggerMessage(900, LogLevel.Warning, "Relay circuit opened for {BreakSeconds} s: offloading stops, jobs run locally")]
    public static partial void CircuitOpened(ILogger logger, double breakSeconds);

    [LoggerMessage(901, LogLevel.Information, "Relay circuit closed: offloading resumes")]
    public static partial void CircuitClosed(ILogger logger);

    [LoggerMessage(902, LogLevel.Information, "Relay throttled job {JobId} (HTTP {Status}); pausing offload for {Seconds} s")]
    public static partial void Throttled(ILogger logger, string jobId, int status, double seconds);

    [LoggerMessage(903, LogLevel.Warning, "Relay request for job {JobId} failed: {Kind}: {Message}")]
    public static partial void RequestFailed(ILogger logger, string jobId, string kind, string message);
}
