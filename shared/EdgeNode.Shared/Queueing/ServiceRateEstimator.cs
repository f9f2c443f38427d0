namespace EdgeNode.Shared.Queueing;

/// <summary>
/// μ: the service rate (jobs per second) of an executor at the current job mix, from the measured service
/// times of its last <see cref="Capacity"/> jobs; also the decode rate in tokens per second. Thread-safe.
/// </summary>
/// <remarks>
/// μ̂ = n / Σ service times over the last n jobs: the maximum-likelihood estimate of an exponential rate,
/// and the reciprocal of the sample mean service time for any distribution (Kleinrock, <i>Queueing Systems
/// Vol. 1</i>, §2.1: x̄ = 1/μ). Tokens per second = Σ tokens / Σ service times over the same jobs. With
/// no sample yet every rate is 0, meaning unknown.
/// </remarks>
public sealed class ServiceRateEstimator
{
    private readonly double[] _seconds;
    private readonly int[] _tokens;
    private readonly Lock _lock = new();
    private int _next;
    private int _count;
    private double _sumSeconds;
    private long _sumTokens;

    /// <param name="capacity">How many recent jobs the estimate covers (e.g. 64); ≥ 1.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="capacity"/> is below 1.</exception>
    public ServiceRateEstimator(int capacity = 64)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _seconds = new double[capacity];
        _tokens = new int[capacity];
    }

    /// <summary>How many recent jobs the estimate covers at most.</summary>
    public int Capacity => _seconds.Length;

    /// <summary>Jobs currently in the estimate (≤ <see cref="Capacity"/>).</summary>
    public int SampleCount
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    /// <summary>Records one finished job.</summary>
    /// <param name="serviceTime">Time the executor was taken by it (the daemon: from taking it off the queue to its
    /// committed outcome, so store commits count as service), &gt;= 0.</param>
    /// <param name="tokens">Tokens it generated, &gt;= 0.</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative.</exception>
    public void Record(TimeSpan serviceTime, int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(serviceTime, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        lock (_lock)
        {
            if (_count == _seconds.Length)
            {
                _sumSeconds -= _seconds[_next];
                _sumTokens -= _tokens[_next];
            }
            else
            {
                _count++;
            }

            _seconds[_next] = serviceTime.TotalSeconds;
            _tokens[_next] = tokens;
            _sumSeconds += serviceTime.TotalSeconds;
            _sumTokens += tokens;
            _next = (_next + 1) % _seconds.Length;
            if (_next == 0)
            {
                // Re-add from scratch once per lap so floating-point drift of the running sum cannot grow.
                _sumSeconds = 0;
                foreach (var s in _seconds.AsSpan(0, _count))
                {
                    _sumSeconds += s;
                }
            }
        }
    }

    /// <summary>μ in jobs per second; 0 while unknown (no sample, or only zero-length samples).</summary>
    public double JobsPerSecond
    {
        get
        {
            lock (_lock)
            {
                return _sumSeconds > 0 ? _count / _sumSeconds : 0;
            }
        }
    }

    /// <summary>Mean service time x̄ = 1/μ in seconds; 0 while unknown.</summary>
    public double MeanServiceSeconds
    {
        get
        {
            lock (_lock)
            {
                return _count > 0 ? _sumSeconds / _count : 0;
            }
        }
    }

    /// <summary>Generated tokens per second of service; 0 while unknown.</summary>
    public double TokensPerSecond
    {
        get
        {
            lock (_lock)
            {
                return _sumSeconds > 0 ? _sumTokens / _sumSeconds : 0;
            }
        }
    }
}
