using EdgeNode.Shared.Queueing;

namespace EdgeNode.Shared.Tests.Queueing;

public sealed class QueueingFormulasTests
{
    [Theory]
    [InlineData(2, 5, 0.4)]
    [InlineData(0, 5, 0)]
    [InlineData(0, 0, 0)]
    [InlineData(10, 5, 2)]
    public void Utilization_Rates_IsLambdaOverMu(double lambda, double mu, double expected) =>
        Assert.Equal(expected, QueueingFormulas.Utilization(lambda, mu), 12);

    [Fact]
    public void Utilization_JobsButNoServiceRate_IsInfinite() =>
        Assert.Equal(double.PositiveInfinity, QueueingFormulas.Utilization(1, 0));

    [Theory]
    [InlineData(2, 5, 1.0 / 3)]
    [InlineData(0, 4, 0.25)]
    [InlineData(8, 10, 0.5)]
    public void MeanTimeInSystem_StableQueue_IsOneOverMuMinusLambda(double lambda, double mu, double expected) =>
        Assert.Equal(expected, QueueingFormulas.MeanTimeInSystem(lambda, mu), 12);

    [Theory]
    [InlineData(5, 5)]
    [InlineData(6, 5)]
    [InlineData(1, 0)]
    public void MeanTimeInSystem_RhoAtLeastOne_IsInfinite(double lambda, double mu) =>
        Assert.Equal(double.PositiveInfinity, QueueingFormulas.MeanTimeInSystem(lambda, mu));

    [Fact]
    public void MeanWaitingTime_MM1_IsRhoTimesW() =>
        Assert.Equal(0.8 * 0.5, QueueingFormulas.MeanWaitingTime(8, 10), 12);

    [Fact]
    public void MeanNumberInSystem_LittlesLaw_IsLambdaTimesW()
    {
        // M/M/1 at ρ = 0.8: L = ρ/(1 − ρ) = 4 (Kleinrock Vol. 1 eq. 3.24) = λW = 8 × 0.5.
        var w = QueueingFormulas.MeanTimeInSystem(8, 10);
        Assert.Equal(4, QueueingFormulas.MeanNumberInSystem(8, w), 12);
        Assert.Equal(0, QueueingFormulas.MeanNumberInSystem(0, double.PositiveInfinity));
    }

    [Theory]
    [InlineData(3, 2, 1.5)]
    [InlineData(0, 0, 0)]
    [InlineData(0, 2, 0)]
    [InlineData(640, 320, 2)]
    public void WorkAheadSeconds_WorkAndRate_IsWorkOverRate(double work, double rate, double expected) =>
        Assert.Equal(expected, QueueingFormulas.WorkAheadSeconds(work, rate), 12);

    [Fact]
    public void WorkAheadSeconds_WorkButUnknownRate_IsInfinite() =>
        Assert.Equal(double.PositiveInfinity, QueueingFormulas.WorkAheadSeconds(1, 0));

    [Theory]
    [InlineData(0, 4, 0.2, 0.2)]   // a free slot: just its own round trip
    [InlineData(3, 4, 0.2, 0.2)]   // 3 of 4 slots taken: still one free
    [InlineData(4, 4, 0.2, 0.25)]  // all 4 taken: wait for 1 of them, 0.2 / 4 on average
    [InlineData(11, 4, 0.2, 0.6)]  // 4 in service + 7 waiting: 8 completions at 4 / 0.2 s before a slot frees (0.4 s), then S
    [InlineData(2, 1, 1.0, 3.0)]   // one slot (M/M/1): 2 ahead + own = 3 service times
    public void MultiServerCompletionSeconds_JobsAheadAndSlots_IsServicePlusWaitForASlot(int ahead, int slots, double service, double expected) =>
        Assert.Equal(expected, QueueingFormulas.MultiServerCompletionSeconds(ahead, slots, service), 12);

    [Fact]
    public void MultiServerCompletionSeconds_BadArguments_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => QueueingFormulas.MultiServerCompletionSeconds(-1, 1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => QueueingFormulas.MultiServerCompletionSeconds(0, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => QueueingFormulas.MultiServerCompletionSeconds(0, 1, double.NaN));
    }

    [Theory]
    [InlineData(-1, 1)]
    [InlineData(1, -1)]
    [InlineData(double.NaN, 1)]
    public void Formulas_NegativeOrNaN_Throw(double a, double b)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => QueueingFormulas.Utilization(a, b));
        Assert.Throws<ArgumentOutOfRangeException>(() => QueueingFormulas.MeanTimeInSystem(a, b));
        Assert.Throws<ArgumentOutOfRangeException>(() => QueueingFormulas.WorkAheadSeconds(a, b));
    }
}
