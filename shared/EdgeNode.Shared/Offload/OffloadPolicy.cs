using EdgeNode.Shared.Queueing;

namespace EdgeNode.Shared.Offload;

/// <summary>Where a new job goes.</summary>
public enum OffloadRoute
{
    /// <summary>The local queue and executor.</summary>
    Local,

    /// <summary>The cloud relay.</summary>
    Relay,

    /// <summary>Neither: refuse the job with <c>queue_full</c> (the local queue is full and offload is impossible).</summary>
    RejectQueueFull,
}

/// <summary>Why <see cref="OffloadPolicy"/> chose a route (for logs and metrics).</summary>
public enum OffloadReason
{
    /// <summary>Local: the node is not overloaded and the deadline (if any) can be met.</summary>
    LocalCapacity,

    /// <summary>Local although offload was wanted or needed: offload is disabled, the circuit is open or the relay asked to wait.</summary>
    RelayUnavailable,

    /// <summary>Relay: ρ is above the threshold (with hysteresis) and enough work is already queued locally.</summary>
    Overloaded,

    /// <summary>Relay: the predicted local completion is later than the job's deadline.</summary>
    Deadline,

    /// <summary>Relay, or a refusal when the relay is unavailable: the local queue is full.</summary>
    QueueFull,

    /// <summary>
    /// Local although the node is overloaded or the deadline is at risk: the relay is no faster, because this node's
    /// jobs already there (its backlog at the relay, with the relay's measured round trip) would finish the job no
    /// sooner than the local queue.
    /// </summary>
    RelayBusy,
}

/// <summary>The policy's answer for one job.</summary>
/// <param name="Route">Where the job goes.</param>
/// <param name="Reason">Why.</param>
/// <param name="PredictedLocalSeconds">Predicted local completion (work ahead / μ + own service time), seconds; +∞ when μ is unknown.</param>
/// <param name="PredictedRelaySeconds">Predicted completion on the relay (<see cref="OffloadInputs.RelayPredictedSeconds"/>), seconds; 0 when unknown.</param>
public readonly record struct OffloadDecision(OffloadRoute Route, OffloadReason Reason, double PredictedLocalSeconds, double PredictedRelaySeconds = 0);

/// <summary>What the policy needs to know about the node and the job when deciding.</summary>
/// <param name="Queue">λ, μ, ρ now (<see cref="QueueEstimator.Snapshot"/>).</param>
/// <param name="JobsAhead">Jobs that would run before this one locally: queued plus the one in service.</param>
/// <param name="OwnServiceSeconds">This job's predicted service time in seconds (e.g. max_new_tokens / tokens/s);
/// null means the mean service time 1/μ.</param>
/// <param name="DeadlineSeconds">Time left until the job's deadline, seconds; null when it has none.</param>
/// <param name="LocalQueueFull">True when the local queue cannot take another job (jobs or bytes).</param>
/// <param name="RelayAvailable">True when offloading is enabled, the circuit is closed (or half-open) and no Retry-After pause is running.</param>
/// <param name="RelayPredictedSeconds">Predicted completion of this job if sent to the relay now, seconds: its measured
/// round trip with this node's jobs already offloaded ahead of it
/// (<see cref="QueueingFormulas.MultiServerCompletionSeconds"/>); null while no round trip has been measured yet
/// (the relay then counts as immediate).</param>
public readonly record struct OffloadInputs(
    QueueSnapshot Queue,
    int JobsAhead,
    double? OwnServiceSeconds,
    double? DeadlineSeconds,
    bool LocalQueueFull,
    bool RelayAvailable,
    double? RelayPredictedSeconds = null);

/// <summary>Thresholds of <see cref="OffloadPolicy"/> (<c>Offload:RhoThreshold</c>, DESIGN.md §8).</summary>
public sealed record OffloadPolicyOptions
{
    /// <summary>ρ above which the node counts as overloaded. Default 0.85.</summary>
    public double EnterThreshold { get; init; } = 0.85;

    /// <summary>ρ below which an overloaded node counts as normal again (hysteresis). Default 0.75; must be ≤ <see cref="EnterThreshold"/>.</summary>
    public double ExitThreshold { get; init; } = 0.75;

    /// <summary>
    /// While overloaded, a job still stays local when fewer than this many jobs are ahead of it, so the local
    /// executor never idles while jobs go to the relay. Default 2 (one in service, one waiting).
    /// </summary>
    public int LocalBacklogJobs { get; init; } = 2;

    /// <summary>Checks the ranges; returns null or a message naming the rule.</summary>
    public string? Validate() =>
        !(EnterThreshold > 0) || double.IsInfinity(EnterThreshold) ? "EnterThreshold must be a positive number"
        : !(ExitThreshold > 0) || ExitThreshold > EnterThreshold ? "ExitThreshold must be positive and at most EnterThreshold"
        : LocalBacklogJobs < 0 ? "LocalBacklogJobs must be >= 0"
        : null;
}

/// <summary>
/// The offload decision (DESIGN.md §5): pure and deterministic, with one piece of state, the hysteresis
/// flag <see cref="Overloaded"/>. Not thread-safe: one scheduler calls it.
/// </summary>
/// <remarks>
/// <para>Rules, in order, for each new job:</para>
/// <list type="number">
/// <item>ρ updates the overloaded flag: it turns on when ρ &gt; <see cref="OffloadPolicyOptions.EnterThreshold"/>
/// and off when ρ &lt; <see cref="OffloadPolicyOptions.ExitThreshold"/>, so routing does not flap around
/// one threshold (ρ is only trusted once μ has been measured).</item>
/// <item>Relay unavailable (disabled, circuit open, Retry-After pause): local, or <c>queue_full</c> when the local queue is full.</item>
/// <item>Local queue full: relay.</item>
/// <item>Deadline: when predicted local completion = jobs ahead / μ + own service time exceeds the time left, relay,
/// unless the relay's predicted completion is no sooner (then local, <see cref="OffloadReason.RelayBusy"/>).</item>
/// <item>Overloaded and at least <see cref="OffloadPolicyOptions.LocalBacklogJobs"/> jobs ahead: relay, unless the
/// relay's predicted completion is later than the local one (then local, <see cref="OffloadReason.RelayBusy"/>).
/// Keeping a short local backlog while offloading keeps the local executor busy: at λ = 2μ, admitting a job
/// locally only when fewer than 2 are ahead makes the local queue an M/M/1/3 queue, busy 1 − 1/15 ≈ 93 % of
/// the time (Kleinrock Vol. 1 §3.6, p_k ∝ ρ^k).</item>
/// <item>Otherwise local.</item>
/// </list>
/// <para>Comparing the two predicted completions is "join the shortest expected delay" routing (Whitt, "Deciding
/// which queue to join", <i>Operations Research</i> 34(1), 1986): the relay's back-pressure reaches admission. Without
/// it, the node offloaded every job beyond its local backlog however many it had already sent, and under sustained
/// overload those jobs waited OFFLOADED at the node for a send slot until their deadlines passed (docs/BENCHMARKS.md,
/// Offload). With it, the local queue grows only until it is as fast as the relay, so both stay busy and a
/// job goes where it is predicted to finish first.</para>
/// <para>ρ here is λ of all accepted jobs over the local μ, so while jobs are offloaded ρ stays high and the
/// flag stays on; it turns off once the offered load itself falls below the exit threshold.</para>
/// </remarks>
public sealed class OffloadPolicy
{
    private readonly OffloadPolicyOptions _options;

    /// <exception cref="ArgumentException">The options break a rule (<see cref="OffloadPolicyOptions.Validate"/>).</exception>
    public OffloadPolicy(OffloadPolicyOptions? options = null)
    {
        _options = options ?? new OffloadPolicyOptions();
        if (_options.Validate() is { } error)
        {
            throw new ArgumentException(error, nameof(options));
        }
    }

    /// <summary>The hysteresis state: true between ρ rising above the enter threshold and falling below the exit threshold.</summary>
    public bool Overloaded { get; private set; }

    /// <summary>Decides the route of one new job (and updates <see cref="Overloaded"/> from its ρ).</summary>
    public OffloadDecision Decide(in OffloadInputs inputs)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(inputs.JobsAhead);
        var queue = inputs.Queue;
        if (queue.ServiceRateKnown)
        {
            if (queue.Utilization > _options.EnterThreshold)
            {
                Overloaded = true;
            }
            else if (queue.Utilization < _options.ExitThreshold)
            {
                Overloaded = false;
            }
        }

        var predicted = PredictLocalSeconds(inputs);
        var relay = inputs.RelayPredictedSeconds ?? 0;
        if (!inputs.RelayAvailable)
        {
            return inputs.LocalQueueFull
                ? new OffloadDecision(OffloadRoute.RejectQueueFull, OffloadReason.QueueFull, predicted, relay)
                : new OffloadDecision(OffloadRoute.Local, Wanted(inputs, predicted) ? OffloadReason.RelayUnavailable : OffloadReason.LocalCapacity, predicted, relay);
        }

        if (inputs.LocalQueueFull)
        {
            return new OffloadDecision(OffloadRoute.Relay, OffloadReason.QueueFull, predicted, relay);
        }

        if (MissesDeadline(inputs, predicted))
        {
            return relay < predicted
                ? new OffloadDecision(OffloadRoute.Relay, OffloadReason.Deadline, predicted, relay)
                : new OffloadDecision(OffloadRoute.Local, OffloadReason.RelayBusy, predicted, relay);
        }

        if (Overloaded && inputs.JobsAhead >= _options.LocalBacklogJobs)
        {
            return relay <= predicted
                ? new OffloadDecision(OffloadRoute.Relay, OffloadReason.Overloaded, predicted, relay)
                : new OffloadDecision(OffloadRoute.Local, OffloadReason.RelayBusy, predicted, relay);
        }

        return new OffloadDecision(OffloadRoute.Local, OffloadReason.LocalCapacity, predicted, relay);
    }

    private bool Wanted(in OffloadInputs inputs, double predicted) =>
        MissesDeadline(inputs, predicted) || (Overloaded && inputs.JobsAhead >= _options.LocalBacklogJobs);

    private static bool MissesDeadline(in OffloadInputs inputs, double predicted) =>
        inputs.DeadlineSeconds is { } deadline && inputs.Queue.ServiceRateKnown && predicted > deadline;

    private static double PredictLocalSeconds(in OffloadInputs inputs)
    {
        var mu = inputs.Queue.ServiceRate;
        if (mu <= 0)
        {
            return double.PositiveInfinity;
        }

        var own = inputs.OwnServiceSeconds ?? 1.0 / mu;
        return QueueingFormulas.WorkAheadSeconds(inputs.JobsAhead, mu) + own;
    }
}
