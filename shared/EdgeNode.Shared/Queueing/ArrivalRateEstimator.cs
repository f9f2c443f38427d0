namespace EdgeNode.Shared.Queueing;

/// <summary>
/// λ: the arrival rate (accepted jobs per second) over a sliding time window, read from an injected
/// <see cref="TimeProvider"/>'s monotonic timestamp. Thread-safe.
/// </summary>
/// <remarks>
/// The estimate is the number of arrivals in the last <see cref="Window"/> divided by the window length
/// (the maximum-likelihood estimate of a Poisson rate from a count over a known interval). While the
/// estimator is younger than the window it divides by its age instead, but never by less than a quarter
/// of the window, so that the first arrivals do not read as a burst. Memory: one 8-byte timestamp per
/// arrival inside the window.
/// </remarks>
public sealed class ArrivalRateEstimator
{
    private readonly TimeProvider _time;
    private readonly long _windowTicks;
    private readonly long _startedAt;
    private readonly Queue<long> _arrivals = new();
    private readonly Lock _lock = new();

    /// <param name="time">Clock; tests pass a FakeTimeProvider.</param>
    /// <param name="window">Length of the sliding window (e.g. 10 s); &gt; 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> is not positive.</exception>
    public ArrivalRateEstimator(TimeProvider time, TimeSpan window)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(window, TimeSpan.Zero);
        _time = time;
        Window = window;
        _windowTicks = (long)(window.TotalSeconds * time.TimestampFrequency);
        _startedAt = time.GetTimestamp();
    }

    /// <summary>The sliding window's length.</summary>
    public TimeSpan Window { get; }

    /// <summary>Counts <paramref name="count"/> arrivals now.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    public void Record(int count = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var now = _time.GetTimestamp();
        lock (_lock)
        {
            for (var i = 0; i < count; i++)
            {
                _arrivals.Enqueue(now);
            }

            Trim(now);
        }
    }

    /// <summary>λ in jobs per second (≥ 0).</summary>
    public double RatePerSecond
    {
        get
        {
            var now = _time.GetTimestamp();
            lock (_lock)
            {
                Trim(now);
                var age = now - _startedAt;
                var span = Math.Max(Math.Min(age, _windowTicks), _windowTicks / 4);
                return span <= 0 ? 0 : _arrivals.Count * (double)_time.TimestampFrequency / span;
            }
        }
    }

    private void Trim(long now)
    {
        var oldest = now - _windowTicks;
        while (_arrivals.Count > 0 && _arrivals.Peek() <= oldest)
        {
            _arrivals.Dequeue();
        }
    }
}
