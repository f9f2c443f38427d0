namespace EdgeNode.Shared.Queueing;

/// <summary>
/// Closed-form results for the M/M/1 queue (Poisson arrivals at rate λ, exponential service at rate μ,
/// one server, FIFO) and Little's law. All rates are in jobs per second, all times in seconds.
/// </summary>
/// <remarks>
/// Sources: L. Kleinrock, <i>Queueing Systems, Volume 1: Theory</i> (Wiley, 1975), §3.2 "The M/M/1 queue"
/// (ρ = λ/μ, p_k = (1 − ρ)ρ^k, N̄ = ρ/(1 − ρ), T = (1/μ)/(1 − ρ) = 1/(μ − λ)); J. D. C. Little,
/// "A proof for the queuing formula L = λW", <i>Operations Research</i> 9(3):383–387, 1961.
/// Little's law holds for any stable queue, not only M/M/1; the W formula needs the M/M/1 assumptions,
/// which EdgeNode uses as a planning estimate (DESIGN.md §5).
/// </remarks>
public static class QueueingFormulas
{
    /// <summary>Utilization ρ = λ / μ (dimensionless). 0 when μ is 0 and λ is 0; +∞ when only μ is 0.</summary>
    /// <param name="arrivalRate">λ, jobs/s, ≥ 0.</param>
    /// <param name="serviceRate">μ, jobs/s, ≥ 0.</param>
    /// <exception cref="ArgumentOutOfRangeException">A rate is negative or NaN.</exception>
    public static double Utilization(double arrivalRate, double serviceRate)
    {
        RequireRate(arrivalRate, nameof(arrivalRate));
        RequireRate(serviceRate, nameof(serviceRate));
        if (serviceRate == 0)
        {
            return arrivalRate == 0 ? 0 : double.PositiveInfinity;
        }

        return arrivalRate / serviceRate;
    }

    /// <summary>
    /// M/M/1 mean time in system (waiting + service) W = 1 / (μ − λ), seconds (Kleinrock Vol. 1 §3.2, eq. 3.26).
    /// </summary>
    /// <returns>W in seconds; +∞ when ρ ≥ 1 (the queue has no steady state: it grows without bound).</returns>
    /// <exception cref="ArgumentOutOfRangeException">A rate is negative or NaN.</exception>
    public static double MeanTimeInSystem(double arrivalRate, double serviceRate)
    {
        RequireRate(arrivalRate, nameof(arrivalRate));
        RequireRate(serviceRate, nameof(serviceRate));
        return arrivalRate < serviceRate ? 1.0 / (serviceRate - arrivalRate) : double.PositiveInfinity;
    }

    /// <summary>
    /// M/M/1 mean waiting time in queue (before service) W_q = ρ / (μ − λ), seconds (Kleinrock Vol. 1 §3.2).
    /// </summary>
    /// <returns>W_q in seconds; +∞ when ρ ≥ 1.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A rate is negative or NaN.</exception>
    public static double MeanWaitingTime(double arrivalRate, double serviceRate)
    {
        var w = MeanTimeInSystem(arrivalRate, serviceRate);
        return double.IsPositiveInfinity(w) ? w : Utilization(arrivalRate, serviceRate) * w;
    }

    /// <summary>Little's law L = λW: mean number of jobs in the system (Little 1961).</summary>
    /// <param name="arrivalRate">λ, jobs/s, ≥ 0.</param>
    /// <param name="meanTimeInSystem">W, seconds, ≥ 0 (may be +∞).</param>
    /// <returns>L, jobs (+∞ when W is +∞ and λ &gt; 0).</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative or NaN.</exception>
    public static double MeanNumberInSystem(double arrivalRate, double meanTimeInSystem)
    {
        RequireRate(arrivalRate, nameof(arrivalRate));
        RequireRate(meanTimeInSystem, nameof(meanTimeInSystem));
        return arrivalRate == 0 ? 0 : arrivalRate * meanTimeInSystem;
    }

    /// <summary>
    /// Work-ahead estimate for a new job: the time until the executor reaches it, = work queued ahead of it
    /// divided by the rate at which that work is done (a deterministic-drain estimate, as used for
    /// admission control; with exponential service its mean equals jobs-ahead × 1/μ).
    /// </summary>
    /// <param name="workAhead">Work ahead of the job in the unit of <paramref name="rate"/>'s numerator:
    /// jobs (queued + the one in service) with μ in jobs/s, or tokens with a tokens/s rate.</param>
    /// <param name="rate">μ in jobs/s or the decode rate in tokens/s, ≥ 0.</param>
    /// <returns>Seconds; 0 when there is no work ahead; +∞ when there is work and the rate is 0 (unknown).</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative or NaN.</exception>
    public static double WorkAheadSeconds(double workAhead, double rate)
    {
        RequireRate(workAhead, nameof(workAhead));
        RequireRate(rate, nameof(rate));
        if (workAhead == 0)
        {
            return 0;
        }

        return rate == 0 ? double.PositiveInfinity : workAhead / rate;
    }

    /// <summary>
    /// Expected completion of a new job sent to a server with <paramref name="servers"/> parallel slots (the relay:
    /// <c>Offload:MaxConcurrent</c> requests at a time) when <paramref name="jobsAhead"/> jobs are already there or
    /// waiting for a slot: its own service time S, plus, when every slot is taken, the wait for
    /// jobsAhead − servers + 1 of them to finish at the combined rate servers / S. This is the M/M/c result that an
    /// arrival finding n ≥ c in the system waits (n − c + 1) / (cμ) (Kleinrock, <i>Queueing Systems Vol. 1</i>,
    /// §3.5, M/M/m; Gross and Harris, <i>Fundamentals of Queueing Theory</i>, §2.3), with μ = 1/S.
    /// </summary>
    /// <param name="jobsAhead">Jobs at the server or waiting for one of its slots, ≥ 0.</param>
    /// <param name="servers">Parallel slots c, ≥ 1.</param>
    /// <param name="meanServiceSeconds">Mean time one job holds a slot, S, seconds, ≥ 0 (for the relay: its measured round trip).</param>
    /// <returns>Seconds until the new job completes: S when a slot is free, else S + (n − c + 1) S / c.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is out of its range or NaN.</exception>
    public static double MultiServerCompletionSeconds(int jobsAhead, int servers, double meanServiceSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(jobsAhead);
        ArgumentOutOfRangeException.ThrowIfLessThan(servers, 1);
        RequireRate(meanServiceSeconds, nameof(meanServiceSeconds));
        var waitingFor = Math.Max(0, jobsAhead - servers + 1);
        return meanServiceSeconds + (waitingFor * meanServiceSeconds / servers);
    }

    private static void RequireRate(double value, string name)
    {
        if (double.IsNaN(value) || value < 0)
        {
            throw new ArgumentOutOfRangeException(name, value, "must be >= 0 and not NaN");
        }
    }
}
