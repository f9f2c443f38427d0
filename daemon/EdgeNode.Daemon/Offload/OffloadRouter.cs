using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Options;
using EdgeNode.Shared.Offload;
using EdgeNode.Shared.Queueing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Offload;

/// <summary>
/// The node's offload state (DESIGN.md §5): the λ/μ estimator, the <see cref="OffloadPolicy"/> with its hysteresis,
/// and the <see cref="RelayClient"/> (null when offload is disabled). Ingest asks <see cref="Decide"/> under the
/// metrics gate; the executor feeds μ through <see cref="Estimator"/>; the <see cref="OffloadWorker"/> sends.
/// </summary>
internal sealed class OffloadRouter : IDisposable
{
    private readonly HttpClient? _http;
    private readonly OffloadOptions _configured;
    private OffloadPolicy _policy;
    private readonly NodeMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly TimeSpan _breakDuration;
    private readonly TimeSpan _roundTripStaleAfter;
    private long? _openSince;
    private ServiceRateEstimator _relayRoundTrip = new(RelayRoundTripSamples);
    private long _lastRoundTripAt;

    /// <summary>How many of the relay's recent round trips the prediction averages.</summary>
    public const int RelayRoundTripSamples = 32;

    public OffloadRouter(IOptions<OffloadOptions> options, IOptions<NodeOptions> node, NodeMetrics metrics, TimeProvider time, ILoggerFactory loggers)
    {
        var o = options.Value;
        _configured = o;
        Threshold = o.RhoThreshold;
        _metrics = metrics;
        _time = time;
        _breakDuration = o.BreakDuration;
        _roundTripStaleAfter = o.ArrivalWindow;
        Estimator = new QueueEstimator(time, o.ArrivalWindow);
        _policy = new OffloadPolicy(new OffloadPolicyOptions
        {
            EnterThreshold = o.RhoThreshold,
            ExitThreshold = o.RhoExitThreshold,
            LocalBacklogJobs = o.LocalBacklogJobs,
        });
        if (o.IsEnabled)
        {
            _http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
            Client = new RelayClient(_http, new RelayClientOptions
            {
                RelayUrl = new Uri(o.RelayUrl!),
                DeviceId = string.IsNullOrWhiteSpace(o.DeviceId) ? node.Value.Id : o.DeviceId,
                DeviceKey = Convert.FromBase64String(o.DeviceKey!),
                RequestTimeout = o.RequestTimeout,
                BreakDuration = o.BreakDuration,
                SamplingDuration = o.SamplingDuration,
                MinimumThroughput = o.MinimumThroughput,
            }, time, loggers.CreateLogger<RelayClient>());
        }

        metrics.BeforeScrape = UpdateGauges;
    }

    /// <summary>The ρ threshold in force (<c>Offload:RhoThreshold</c>, or the desired property <c>offloadThreshold</c>).</summary>
    public double Threshold { get; private set; }

    /// <summary>
    /// Changes the ρ threshold live (IoT Hub desired property <c>offloadThreshold</c>; DESIGN.md §5). The exit threshold
    /// keeps the configured hysteresis ratio <c>RhoExitThreshold / RhoThreshold</c>; the policy's overloaded flag starts
    /// over (it is set again by the next ρ above the threshold). Takes the metrics gate, like <see cref="Decide"/>'s callers.
    /// </summary>
    /// <param name="threshold">ρ above which jobs are offloaded, 0.01 to 100; null restores <c>Offload:RhoThreshold</c>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threshold"/> is outside 0.01 to 100.</exception>
    public void SetThreshold(double? threshold)
    {
        var enter = threshold ?? _configured.RhoThreshold;
        ArgumentOutOfRangeException.ThrowIfLessThan(enter, 0.01, nameof(threshold));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(enter, 100, nameof(threshold));
        var policy = new OffloadPolicy(new OffloadPolicyOptions
        {
            EnterThreshold = enter,
            ExitThreshold = enter * (_configured.RhoExitThreshold / _configured.RhoThreshold),
            LocalBacklogJobs = _configured.LocalBacklogJobs,
        });
        lock (_metrics.Gate)
        {
            _policy = policy;
            Threshold = enter;
        }
    }

    /// <summary>λ (every accepted job, offloaded ones included) and μ (the local executor's service times).</summary>
    public QueueEstimator Estimator { get; }

    /// <summary>
    /// Records one relay round trip as this node sees it: from sending a job to its outcome (queueing at the relay
    /// included). The last <see cref="RelayRoundTripSamples"/> predict when a newly offloaded job would finish
    /// (<see cref="PredictRelaySeconds"/>). Thread-safe.
    /// </summary>
    public void RecordRelayRoundTrip(TimeSpan roundTrip)
    {
        Volatile.Read(ref _relayRoundTrip).Record(roundTrip, 0);
        Volatile.Write(ref _lastRoundTripAt, _time.GetTimestamp());
    }

    /// <summary>The relay's mean round trip over its recent answers, seconds; 0 when none is known.</summary>
    public double RelayRoundTripSeconds => Volatile.Read(ref _relayRoundTrip).MeanServiceSeconds;

    /// <summary>
    /// Predicted completion of a job sent to the relay now with <paramref name="relayJobsAhead"/> of this node's jobs
    /// already offloaded (sending or waiting for one of the <c>Offload:MaxConcurrent</c> send slots), seconds
    /// (<see cref="QueueingFormulas.MultiServerCompletionSeconds"/> with the mean recent round trip); null when
    /// unknown: before the first answer, and when none of this node's jobs is at the relay and its last answer is
    /// older than <c>Offload:ArrivalWindow</c>. The measurements are then forgotten, so the next job goes to the relay
    /// and measures again: a slow first request (the relay's cold start) or a passing overload there would
    /// otherwise keep every job local for good, since only jobs sent there refresh the estimate.
    /// </summary>
    public double? PredictRelaySeconds(int relayJobsAhead)
    {
        var roundTrips = Volatile.Read(ref _relayRoundTrip);
        if (roundTrips.SampleCount == 0)
        {
            return null;
        }

        if (relayJobsAhead == 0 && _time.GetElapsedTime(Volatile.Read(ref _lastRoundTripAt)) > _roundTripStaleAfter)
        {
            Volatile.Write(ref _relayRoundTrip, new ServiceRateEstimator(RelayRoundTripSamples));
            return null;
        }

        return QueueingFormulas.MultiServerCompletionSeconds(relayJobsAhead, _configured.MaxConcurrent, roundTrips.MeanServiceSeconds);
    }

    /// <summary>The relay client, or null when offload is disabled.</summary>
    public RelayClient? Client { get; }

    /// <summary>Reads the number of OFFLOADED jobs in the store (set by the worker once the store is open).</summary>
    public Func<int>? OffloadedCount { get; set; }

    /// <summary>True when offload is configured on.</summary>
    public bool Enabled => Client is not null;

    /// <summary>Sets the offload gauges; called under the metrics gate before a scrape.</summary>
    public void UpdateGauges()
    {
        var q = Estimator.Snapshot();
        _metrics.Offloaded.Set(OffloadedCount?.Invoke() ?? 0);
        _metrics.ArrivalRate.Set(q.ArrivalRate);
        _metrics.ServiceRate.Set(q.ServiceRate);
        _metrics.Utilization.Set(q.Utilization);
        _metrics.PredictedWait.Set(q.PredictedTimeInSystem);
        _metrics.RelayRoundTrip.Set(RelayRoundTripSeconds);
        _metrics.RelayCircuit.Set(Client?.CircuitState switch
        {
            null => -1,
            RelayCircuitState.Closed => 0,
            RelayCircuitState.HalfOpen => 1,
            _ => 2,
        });
    }

    /// <summary>
    /// Routes one new job. Call under the metrics gate (one caller at a time: the policy keeps hysteresis state).
    /// </summary>
    /// <param name="jobsAhead">Jobs queued plus in service locally.</param>
    /// <param name="relayJobsAhead">This node's jobs OFFLOADED and not yet answered (sending or waiting to be sent).</param>
    /// <param name="maxNewTokens">The job's token budget (its own service time is this / tokens per second).</param>
    /// <param name="deadlineMs">The job's deadline_ms, or null.</param>
    /// <param name="localQueueFull">True when Queue:MaxJobs or Queue:MaxBytes would be exceeded.</param>
    public OffloadDecision Decide(int jobsAhead, int relayJobsAhead, int maxNewTokens, int? deadlineMs, bool localQueueFull)
    {
        var q = Estimator.Snapshot();
        double? own = q.TokensPerSecond > 0 ? maxNewTokens / q.TokensPerSecond : null;
        var available = RelayAvailable(out var probe);
        var decision = _policy.Decide(new OffloadInputs(q, jobsAhead, own, deadlineMs / 1000.0, localQueueFull, available, PredictRelaySeconds(relayJobsAhead)));
        if (probe && decision.Route == OffloadRoute.Relay)
        {
            _openSince = _time.GetTimestamp(); // this job is the probe; the next one waits another break
        }

        return decision;
    }

    /// <summary>
    /// Whether a job may go to the relay now: no Retry-After pause and the circuit not open. Polly moves an open
    /// circuit to half-open only when a request is attempted after the break, so once per
    /// <c>Offload:BreakDuration</c> of an open circuit one job is let through as the probe (<paramref name="probe"/>);
    /// if the relay is still down the circuit rejects it at once and the job runs locally.
    /// </summary>
    private bool RelayAvailable(out bool probe)
    {
        probe = false;
        if (Client is null || Client.PausedUntil is not null)
        {
            return false;
        }

        if (Client.CircuitState != RelayCircuitState.Open)
        {
            _openSince = null;
            return true;
        }

        var now = _time.GetTimestamp();
        _openSince ??= now;
        if (_time.GetElapsedTime(_openSince.Value, now) >= _breakDuration)
        {
            probe = true;
            return true;
        }

        return false;
    }

    /// <summary>Circuit state for status: "disabled", "closed", "half_open", "open".</summary>
    public string CircuitName => Client?.CircuitState switch
    {
        null => "disabled",
        RelayCircuitState.Closed => "closed",
        RelayCircuitState.HalfOpen => "half_open",
        _ => "open",
    };

    public void Dispose() => _http?.Dispose();
}
