namespace EdgeNode.Shared.Queueing;

/// <summary>
/// The queueing state of one executor as estimated now (DESIGN.md §5). Rates in jobs/s, times in seconds.
/// </summary>
/// <param name="ArrivalRate">λ, accepted jobs per second.</param>
/// <param name="ServiceRate">μ, jobs per second the executor completes; 0 while unknown.</param>
/// <param name="Utilization">ρ = λ/μ; 0 while μ is unknown and nothing arrived, +∞ when μ is unknown and jobs arrive.</param>
/// <param name="PredictedTimeInSystem">M/M/1 W = 1/(μ − λ) in seconds; +∞ when ρ ≥ 1 or μ is unknown.</param>
/// <param name="PredictedNumberInSystem">Little's L = λW, jobs; +∞ with W.</param>
/// <param name="TokensPerSecond">Decode rate, generated tokens per second of service; 0 while unknown.</param>
public readonly record struct QueueSnapshot(
    double ArrivalRate,
    double ServiceRate,
    double Utilization,
    double PredictedTimeInSystem,
    double PredictedNumberInSystem,
    double TokensPerSecond)
{
    /// <summary>True once at least one service time has been measured.</summary>
    public bool ServiceRateKnown => ServiceRate > 0;
}

/// <summary>
/// λ and μ estimators of one executor together, with the derived ρ, W, L (<see cref="QueueingFormulas"/>)
/// and the work-ahead estimate for a new job. Thread-safe; pure apart from the injected clock.
/// </summary>
public sealed class QueueEstimator
{
    /// <param name="time">Clock for λ's window.</param>
    /// <param name="arrivalWindow">λ's sliding window (e.g. 10 s).</param>
    /// <param name="serviceSamples">How many recent jobs μ covers (e.g. 64).</param>
    public QueueEstimator(TimeProvider time, TimeSpan arrivalWindow, int serviceSamples = 64)
    {
        Arrivals = new ArrivalRateEstimator(time, arrivalWindow);
        Service = new ServiceRateEstimator(serviceSamples);
    }

    /// <summary>λ: call <see cref="ArrivalRateEstimator.Record"/> for each accepted job.</summary>
    public ArrivalRateEstimator Arrivals { get; }

    /// <summary>μ: call <see cref="ServiceRateEstimator.Record"/> for each job the executor finished.</summary>
    public ServiceRateEstimator Service { get; }

    /// <summary>λ, μ, ρ, W, L and tokens/s now.</summary>
    public QueueSnapshot Snapshot()
    {
        var lambda = Arrivals.RatePerSecond;
        var mu = Service.JobsPerSecond;
        var rho = QueueingFormulas.Utilization(lambda, mu);
        var w = QueueingFormulas.MeanTimeInSystem(lambda, mu);
        var l = QueueingFormulas.MeanNumberInSystem(lambda, w);
        return new QueueSnapshot(lambda, mu, rho, w, l, Service.TokensPerSecond);
    }

    /// <summary>
    /// Predicted seconds until a new job would start: <paramref name="jobsAhead"/> (queued plus the one in
    /// service) / μ. +∞ while μ is unknown and jobs are ahead.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="jobsAhead"/> is negative.</exception>
    public double WorkAheadSeconds(int jobsAhead)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(jobsAhead);
        return QueueingFormulas.WorkAheadSeconds(jobsAhead, Service.JobsPerSecond);
    }
}
