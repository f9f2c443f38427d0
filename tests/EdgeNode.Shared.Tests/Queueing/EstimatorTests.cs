using EdgeNode.Shared.Queueing;
using Microsoft.Extensions.Time.Testing;

namespace EdgeNode.Shared.Tests.Queueing;

public sealed class ArrivalRateEstimatorTests
{
    [Fact]
    public void RatePerSecond_SteadyArrivalsOverAFullWindow_IsCountOverWindow()
    {
        var time = new FakeTimeProvider();
        var lambda = new ArrivalRateEstimator(time, TimeSpan.FromSeconds(10));

        for (var i = 0; i < 40; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(500));
            lambda.Record();
        }

        // 20 s elapsed; the last 10 s hold 20 arrivals (at 10.5 .. 20.0 s).
        Assert.Equal(2.0, lambda.RatePerSecond, 9);
    }

    [Fact]
    public void RatePerSecond_ArrivalsLeaveTheWindow_DropsToZero()
    {
        var time = new FakeTimeProvider();
        var lambda = new ArrivalRateEstimator(time, TimeSpan.FromSeconds(10));
        time.Advance(TimeSpan.FromSeconds(30));
        lambda.Record(5);

        Assert.Equal(0.5, lambda.RatePerSecond, 9);
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(0, lambda.RatePerSecond);
    }

    [Fact]
    public void RatePerSecond_YoungerThanTheWindow_DividesByAgeButNotLessThanAQuarterWindow()
    {
        var time = new FakeTimeProvider();
        var lambda = new ArrivalRateEstimator(time, TimeSpan.FromSeconds(10));

        lambda.Record(5);
        Assert.Equal(2.0, lambda.RatePerSecond, 9); // 5 / 2.5 s (a quarter window), not 5 / 0 s

        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(1.0, lambda.RatePerSecond, 9); // 5 / 5 s of age
    }

    [Fact]
    public void Constructor_NonPositiveWindow_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new ArrivalRateEstimator(TimeProvider.System, TimeSpan.Zero));
}

public sealed class ServiceRateEstimatorTests
{
    [Fact]
    public void Rates_NoSample_AreZeroMeaningUnknown()
    {
        var mu = new ServiceRateEstimator();

        Assert.Equal(0, mu.JobsPerSecond);
        Assert.Equal(0, mu.TokensPerSecond);
        Assert.Equal(0, mu.MeanServiceSeconds);
    }

    [Fact]
    public void JobsPerSecond_Samples_IsCountOverTotalServiceTime()
    {
        var mu = new ServiceRateEstimator(capacity: 4);
        mu.Record(TimeSpan.FromMilliseconds(500), 32);
        mu.Record(TimeSpan.FromMilliseconds(250), 16);
        mu.Record(TimeSpan.FromMilliseconds(250), 16);

        Assert.Equal(3.0, mu.JobsPerSecond, 9);
        Assert.Equal(1.0 / 3, mu.MeanServiceSeconds, 9);
        Assert.Equal(64.0, mu.TokensPerSecond, 9);
    }

    [Fact]
    public void JobsPerSecond_MoreSamplesThanCapacity_CoversOnlyTheLatest()
    {
        var mu = new ServiceRateEstimator(capacity: 2);
        mu.Record(TimeSpan.FromSeconds(10), 1);
        mu.Record(TimeSpan.FromSeconds(1), 10);
        mu.Record(TimeSpan.FromSeconds(1), 10);
        mu.Record(TimeSpan.FromSeconds(1), 10);
        mu.Record(TimeSpan.FromSeconds(1), 10);

        Assert.Equal(2, mu.SampleCount);
        Assert.Equal(1.0, mu.JobsPerSecond, 9);
        Assert.Equal(10.0, mu.TokensPerSecond, 9);
    }

    [Fact]
    public void Record_Negative_Throws()
    {
        var mu = new ServiceRateEstimator();
        Assert.Throws<ArgumentOutOfRangeException>(() => mu.Record(TimeSpan.FromSeconds(-1), 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => mu.Record(TimeSpan.FromSeconds(1), -1));
    }
}

public sealed class QueueEstimatorTests
{
    [Fact]
    public void Snapshot_LambdaAndMuMeasured_DerivesRhoWAndL()
    {
        var time = new FakeTimeProvider();
        var estimator = new QueueEstimator(time, TimeSpan.FromSeconds(10));
        for (var i = 0; i < 80; i++)
        {
            time.Advance(TimeSpan.FromMilliseconds(125)); // 8 jobs/s
            estimator.Arrivals.Record();
        }

        for (var i = 0; i < 10; i++)
        {
            estimator.Service.Record(TimeSpan.FromMilliseconds(100), 20); // 10 jobs/s, 200 tokens/s
        }

        var s = estimator.Snapshot();

        Assert.Equal(8, s.ArrivalRate, 9);
        Assert.Equal(10, s.ServiceRate, 9);
        Assert.Equal(0.8, s.Utilization, 9);
        Assert.Equal(0.5, s.PredictedTimeInSystem, 9);
        Assert.Equal(4, s.PredictedNumberInSystem, 9);
        Assert.Equal(200, s.TokensPerSecond, 9);
        Assert.Equal(0.3, estimator.WorkAheadSeconds(3), 9);
    }

    [Fact]
    public void Snapshot_ServiceRateUnknown_IsInfiniteWithArrivals()
    {
        var time = new FakeTimeProvider();
        var estimator = new QueueEstimator(time, TimeSpan.FromSeconds(10));
        estimator.Arrivals.Record();

        var s = estimator.Snapshot();

        Assert.False(s.ServiceRateKnown);
        Assert.Equal(double.PositiveInfinity, s.Utilization);
        Assert.Equal(double.PositiveInfinity, s.PredictedTimeInSystem);
        Assert.Equal(double.PositiveInfinity, estimator.WorkAheadSeconds(1));
        Assert.Equal(0, estimator.WorkAheadSeconds(0));
    }
}
