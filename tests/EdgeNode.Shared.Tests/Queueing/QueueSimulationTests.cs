using EdgeNode.Shared.Offload;
using EdgeNode.Shared.Queueing;

namespace EdgeNode.Shared.Tests.Queueing;

/// <summary>
/// The estimators and the offload policy against queueing theory (issue 5, item 5), on a seeded discrete-event
/// simulation (<see cref="QueueSimulation"/>): fixed seeds, so each run is the same every time.
/// </summary>
public sealed class QueueSimulationTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const double Mu = 10; // jobs/s: a tiny-model job of ~0.1 s

    [Theory]
    [InlineData(0.5, 1)]
    [InlineData(0.5, 2)]
    [InlineData(0.8, 1)]
    [InlineData(0.8, 2)]
    public void Simulate_MM1_MeanTimeInSystemIsOneOverMuMinusLambdaAndLittlesLawHolds(double rho, int seed)
    {
        var lambda = rho * Mu;

        var run = QueueSimulation.Run(lambda, Mu, jobs: 200_000, seed);
        output.WriteLine(run.ToString());

        // Kleinrock Vol. 1 §3.2: W = 1/(μ − λ); within 10 %.
        var theory = QueueingFormulas.MeanTimeInSystem(lambda, Mu);
        Assert.InRange(run.MeanLocalTimeInSystem / theory, 0.9, 1.1);

        // Little 1961: L (time-average number in system) = λW, with the measured λ and W; within 10 %.
        var little = QueueingFormulas.MeanNumberInSystem(run.MeasuredArrivalRate, run.MeanLocalTimeInSystem);
        Assert.InRange(run.TimeAverageLocalNumberInSystem / little, 0.9, 1.1);

        // The estimators the scheduler uses track the true rates (their averages over the run within 5 %).
        Assert.InRange(run.MeanEstimatedArrivalRate / lambda, 0.95, 1.05);
        Assert.InRange(run.MeanEstimatedServiceRate / Mu, 0.95, 1.05);
        Assert.InRange(QueueingFormulas.Utilization(run.MeanEstimatedArrivalRate, run.MeanEstimatedServiceRate) / rho, 0.9, 1.1);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Simulate_LambdaTwiceMuWithOffload_LocalUtilizationStaysAtLeast80PercentAndTheRestIsOffloaded(int seed)
    {
        var policy = new OffloadPolicy();

        var run = QueueSimulation.Run(2 * Mu, Mu, jobs: 100_000, seed, policy);
        output.WriteLine(run.ToString());

        Assert.True(run.LocalUtilization >= 0.8, $"local utilization {run.LocalUtilization:P1}");
        Assert.InRange((double)run.Offloaded / run.Arrivals, 0.4, 0.65);
        // The local queue stays short (at most LocalBacklogJobs ahead of an admitted job), so local jobs finish
        // within a few service times instead of the unbounded M/M/1 queue at ρ = 2.
        Assert.True(run.MeanLocalTimeInSystem < 3 / Mu, $"local W {run.MeanLocalTimeInSystem:F3} s");
        // Hysteresis: the overloaded flag turns on once and stays on (no flapping).
        Assert.Equal(1, run.ModeChanges);
    }

    [Fact]
    public void Simulate_LambdaHalfMuWithOffload_AlmostNothingIsOffloaded()
    {
        var run = QueueSimulation.Run(0.5 * Mu, Mu, jobs: 50_000, seed: 3, new OffloadPolicy());

        // ρ̂ is an estimate (10 s window, 64 service times): rare excursions above 0.85 may offload a job that
        // found 2 or more ahead of it, but well under 1 % of the jobs.
        Assert.True(run.Offloaded < run.Arrivals / 100, $"{run.Offloaded} of {run.Arrivals} offloaded, {run.ModeChanges} mode changes");
    }

    [Fact]
    public void Simulate_LambdaTwiceMuWithoutOffload_TheQueueGrowsWithoutBound()
    {
        // The contrast: without offload, W keeps growing with the run length (no steady state at ρ = 2).
        var shortRun = QueueSimulation.Run(2 * Mu, Mu, jobs: 2_000, seed: 1);
        var longRun = QueueSimulation.Run(2 * Mu, Mu, jobs: 20_000, seed: 1);

        Assert.True(longRun.MeanLocalTimeInSystem > 5 * shortRun.MeanLocalTimeInSystem);
    }
}
