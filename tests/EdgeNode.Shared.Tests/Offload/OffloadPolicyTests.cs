using EdgeNode.Shared.Offload;
using EdgeNode.Shared.Queueing;

namespace EdgeNode.Shared.Tests.Offload;

public sealed class OffloadPolicyTests
{
    private const double Mu = 10;

    private static OffloadInputs Inputs(double rho, int jobsAhead = 5, double? deadline = null, bool full = false, bool relay = true, double mu = Mu, double? own = null, double? relaySeconds = null) =>
        new(new QueueSnapshot(rho * mu, mu, mu > 0 ? rho : double.PositiveInfinity, 0, 0, 0), jobsAhead, own, deadline, full, relay, relaySeconds);

    [Fact]
    public void Decide_BelowThreshold_Local()
    {
        var policy = new OffloadPolicy();

        var decision = policy.Decide(Inputs(0.5));

        Assert.Equal(OffloadRoute.Local, decision.Route);
        Assert.Equal(OffloadReason.LocalCapacity, decision.Reason);
        Assert.False(policy.Overloaded);
    }

    [Fact]
    public void Decide_AboveThresholdWithABacklog_Relay()
    {
        var policy = new OffloadPolicy();

        var decision = policy.Decide(Inputs(0.9, jobsAhead: 2));

        Assert.Equal(OffloadRoute.Relay, decision.Route);
        Assert.Equal(OffloadReason.Overloaded, decision.Reason);
    }

    [Fact]
    public void Decide_AboveThresholdButTheExecutorIsNearlyIdle_StaysLocal()
    {
        var policy = new OffloadPolicy();

        Assert.Equal(OffloadRoute.Local, policy.Decide(Inputs(2.0, jobsAhead: 0)).Route);
        Assert.Equal(OffloadRoute.Local, policy.Decide(Inputs(2.0, jobsAhead: 1)).Route);
        Assert.True(policy.Overloaded);
    }

    [Fact]
    public void Decide_RhoBetweenTheThresholds_KeepsThePreviousMode()
    {
        // Hysteresis: 0.80 is below the enter threshold (0.85) and above the exit threshold (0.75).
        var rising = new OffloadPolicy();
        Assert.Equal(OffloadRoute.Local, rising.Decide(Inputs(0.80)).Route);

        var falling = new OffloadPolicy();
        falling.Decide(Inputs(0.90));
        Assert.Equal(OffloadRoute.Relay, falling.Decide(Inputs(0.80)).Route);
        Assert.Equal(OffloadRoute.Relay, falling.Decide(Inputs(0.76)).Route);
        Assert.Equal(OffloadRoute.Local, falling.Decide(Inputs(0.74)).Route);
        Assert.False(falling.Overloaded);
    }

    [Fact]
    public void Decide_PredictedLocalCompletionAfterTheDeadline_Relay()
    {
        var policy = new OffloadPolicy();

        // 5 jobs ahead / 10 jobs/s + own 0.1 s = 0.6 s > 0.5 s left.
        var decision = policy.Decide(Inputs(0.3, jobsAhead: 5, deadline: 0.5));

        Assert.Equal(OffloadRoute.Relay, decision.Route);
        Assert.Equal(OffloadReason.Deadline, decision.Reason);
        Assert.Equal(0.6, decision.PredictedLocalSeconds, 9);
    }

    [Fact]
    public void Decide_DeadlineReachableLocally_Local()
    {
        var policy = new OffloadPolicy();

        // 2 ahead / 10 + own 0.3 s = 0.5 s <= 0.5 s.
        Assert.Equal(OffloadRoute.Local, policy.Decide(Inputs(0.3, jobsAhead: 2, deadline: 0.5, own: 0.3)).Route);
    }

    [Fact]
    public void Decide_ServiceRateUnknown_LocalAndNoModeChange()
    {
        var policy = new OffloadPolicy();

        var decision = policy.Decide(Inputs(5, jobsAhead: 10, deadline: 0.001, mu: 0));

        Assert.Equal(OffloadRoute.Local, decision.Route);
        Assert.False(policy.Overloaded);
        Assert.Equal(double.PositiveInfinity, decision.PredictedLocalSeconds);
    }

    [Fact]
    public void Decide_LocalQueueFull_RelayWhenAvailableElseQueueFull()
    {
        var policy = new OffloadPolicy();

        Assert.Equal(new OffloadRoute[] { OffloadRoute.Relay, OffloadRoute.RejectQueueFull },
            new[] { policy.Decide(Inputs(0.1, full: true)).Route, policy.Decide(Inputs(0.1, full: true, relay: false)).Route });
    }

    [Fact]
    public void Decide_RelayUnavailableWhileOverloaded_LocalWithTheReason()
    {
        var policy = new OffloadPolicy();

        var decision = policy.Decide(Inputs(2, jobsAhead: 5, relay: false));

        Assert.Equal(OffloadRoute.Local, decision.Route);
        Assert.Equal(OffloadReason.RelayUnavailable, decision.Reason);
    }

    [Fact]
    public void Decide_OverloadedButTheRelayIsPredictedSlower_LocalBecauseTheRelayIsBusy()
    {
        var policy = new OffloadPolicy();

        // Local: 5 ahead / 10 jobs/s + 0.1 s = 0.6 s; the relay (its backlog from this node and round trip): 0.9 s.
        var decision = policy.Decide(Inputs(2.0, jobsAhead: 5, relaySeconds: 0.9));

        Assert.Equal(OffloadRoute.Local, decision.Route);
        Assert.Equal(OffloadReason.RelayBusy, decision.Reason);
        Assert.Equal(0.9, decision.PredictedRelaySeconds, 9);
        // As soon as the relay is no slower than the local queue, jobs go there again.
        Assert.Equal(OffloadRoute.Relay, policy.Decide(Inputs(2.0, jobsAhead: 5, relaySeconds: 0.6)).Route);
    }

    [Fact]
    public void Decide_DeadlineMissedLocallyAndTheRelayIsNoSooner_LocalBecauseTheRelayIsBusy()
    {
        var policy = new OffloadPolicy();

        // Local 0.6 s > 0.5 s left; the relay predicts 0.7 s: no route makes it, the sooner one is local.
        var late = policy.Decide(Inputs(0.3, jobsAhead: 5, deadline: 0.5, relaySeconds: 0.7));
        var sooner = policy.Decide(Inputs(0.3, jobsAhead: 5, deadline: 0.5, relaySeconds: 0.4));

        Assert.Equal((OffloadRoute.Local, OffloadReason.RelayBusy), (late.Route, late.Reason));
        Assert.Equal((OffloadRoute.Relay, OffloadReason.Deadline), (sooner.Route, sooner.Reason));
    }

    [Fact]
    public void Decide_LocalQueueFullAndTheRelayPredictedSlow_StillRelay()
    {
        // A full local queue cannot take the job: the relay (however slow) is the only place, as before.
        var decision = new OffloadPolicy().Decide(Inputs(2.0, full: true, relaySeconds: 100));

        Assert.Equal((OffloadRoute.Relay, OffloadReason.QueueFull), (decision.Route, decision.Reason));
    }

    [Fact]
    public void Constructor_ExitAboveEnter_Throws() =>
        Assert.Throws<ArgumentException>(() => new OffloadPolicy(new OffloadPolicyOptions { EnterThreshold = 0.7, ExitThreshold = 0.8 }));
}
