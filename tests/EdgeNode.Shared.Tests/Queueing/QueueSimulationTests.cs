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

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Simulate_LambdaTwiceMuWithARelayOfFourSlots_LocalStaysBusyAndOffloadedJobsDoNotQueue(int seed)
    {
        // A relay with 4 request slots, each serving at μ/2 (round trip 2/μ): capacity 2μ for the ~μ of overflow.
        var run = QueueSimulation.Run(2 * Mu, Mu, jobs: 100_000, seed, new OffloadPolicy(), relaySlots: 4, relayRate: Mu / 2);
        output.WriteLine(run.ToString());

        Assert.True(run.LocalUtilization >= 0.8, $"local utilization {run.LocalUtilization:P1}");
        Assert.InRange((double)run.Offloaded / run.Arrivals, 0.35, 0.65);
        // An offloaded job takes about its round trip (2/μ) plus little waiting for a slot.
        Assert.True(run.MeanRelayTimeInSystem < 3 / Mu, $"relay W {run.MeanRelayTimeInSystem:F3} s");
        Assert.True(run.MeanLocalTimeInSystem < 5 / Mu, $"local W {run.MeanLocalTimeInSystem:F3} s");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Simulate_RelayWithLessCapacityThanTheOverflow_PredictedRelayCompletionBalancesTheDelays(bool predictRelay)
    {
        // λ = 2μ but the relay serves only 0.5μ (2 slots at μ/4): the system is overloaded whatever the routing.
        // Told the relay's predicted completion, the policy sends a job where it is predicted to finish first, so
        // the two delays stay alike; without it (the policy before), every job beyond the local backlog of 2 went
        // to the relay, where they piled up waiting for a slot while the local queue stayed short.
        var run = QueueSimulation.Run(2 * Mu, Mu, jobs: 20_000, seed: 4, new OffloadPolicy(), relaySlots: 2, relayRate: Mu / 4, predictRelay: predictRelay);
        output.WriteLine(run.ToString());

        var ratio = run.MeanRelayTimeInSystem / run.MeanLocalTimeInSystem;
        if (predictRelay)
        {
            Assert.InRange(ratio, 0.5, 2);
            Assert.True(run.LocalUtilization >= 0.95, $"local utilization {run.LocalUtilization:P1}");
        }
        else
        {
            Assert.True(ratio > 20, $"relay W / local W = {ratio:F1}");
        }
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
