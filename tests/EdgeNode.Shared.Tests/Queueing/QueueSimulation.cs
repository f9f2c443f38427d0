using EdgeNode.Shared.Offload;
using EdgeNode.Shared.Queueing;
using Microsoft.Extensions.Time.Testing;

namespace EdgeNode.Shared.Tests.Queueing;

/// <summary>What a simulation run measured. Times in seconds, rates in jobs/s.</summary>
internal sealed record SimulationResult(
    int Arrivals,
    int Local,
    int Offloaded,
    double Horizon,
    double MeanLocalTimeInSystem,
    double TimeAverageLocalNumberInSystem,
    double LocalUtilization,
    double MeanEstimatedArrivalRate,
    double MeanEstimatedServiceRate,
    int ModeChanges,
    double MeanRelayTimeInSystem = 0)
{
    public double MeasuredArrivalRate => Arrivals / Horizon;

    public double MeasuredLocalArrivalRate => Local / Horizon;
}

/// <summary>
/// A seeded discrete-event simulation of one node: Poisson arrivals at rate λ (exponential inter-arrival times by
/// inverse-CDF sampling, −ln(U)/λ), one FIFO server with exponential service at rate μ, and optionally the
/// <see cref="OffloadPolicy"/> routing each arrival to the relay: an infinite server outside the node, or (with
/// <c>relaySlots</c> &gt; 0) <c>relaySlots</c> parallel slots with exponential service at <c>relayRate</c> each, jobs
/// waiting FIFO at the node for a free slot as the daemon's offload worker does, and the policy told the predicted
/// relay completion from the measured round trips (<see cref="QueueingFormulas.MultiServerCompletionSeconds"/>).
/// The events (arrivals and departures) are processed in time order; a <see cref="FakeTimeProvider"/> is advanced to each
/// event so the <see cref="QueueEstimator"/> sees the simulated clock. The number in the local system is
/// integrated over time for L; W is the mean of the local jobs' departure − arrival.
/// </summary>
internal static class QueueSimulation
{
    public static SimulationResult Run(double lambda, double mu, int jobs, int seed, OffloadPolicy? policy = null, TimeSpan? arrivalWindow = null,
        int relaySlots = 0, double relayRate = 0, bool predictRelay = true)
    {
        var relayRoundTrip = new ServiceRateEstimator(64);
        var relayInService = new List<(double Arrival, double Done, double Service)>();
        var relayWaiting = new Queue<double>(); // arrival times of offloaded jobs waiting for a slot
        var relayCompleted = 0;
        var sumRelayTime = 0.0;
        var random = new Random(seed);
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var estimator = new QueueEstimator(time, arrivalWindow ?? TimeSpan.FromSeconds(10));
        var queue = new Queue<(double Arrival, double Service)>(); // local jobs, the head in service
        var now = 0.0;
        var nextArrival = Exponential(random, lambda);
        var nextDeparture = double.PositiveInfinity;
        var arrivals = 0;
        var local = 0;
        var offloaded = 0;
        var completed = 0;
        var sumTimeInSystem = 0.0;
        var area = 0.0;
        var busy = 0.0;
        var sumLambdaHat = 0.0;
        var sumMuHat = 0.0;
        var samples = 0;
        var modeChanges = 0;
        var overloaded = false;

        while (arrivals < jobs || queue.Count > 0 || relayInService.Count > 0)
        {
            var relayNext = relayInService.Count > 0 ? relayInService.Min(r => r.Done) : double.PositiveInfinity;
            var next = Math.Min(arrivals < jobs ? Math.Min(nextArrival, nextDeparture) : nextDeparture, relayNext);
            area += queue.Count * (next - now);
            if (queue.Count > 0)
            {
                busy += next - now;
            }

            time.Advance(TimeSpan.FromSeconds(next - now));
            now = next;

            if (now == relayNext && now != nextDeparture)
            {
                var done = relayInService.FindIndex(r => r.Done == now);
                var finished = relayInService[done];
                relayInService.RemoveAt(done);
                relayRoundTrip.Record(TimeSpan.FromSeconds(finished.Service), 32);
                sumRelayTime += now - finished.Arrival;
                relayCompleted++;
                if (relayWaiting.Count > 0)
                {
                    var service = Exponential(random, relayRate);
                    relayInService.Add((relayWaiting.Dequeue(), now + service, service));
                }

                continue;
            }

            if (now == nextDeparture)
            {
                var (arrival, service) = queue.Dequeue();
                sumTimeInSystem += now - arrival;
                completed++;
                estimator.Service.Record(TimeSpan.FromSeconds(service), 32);
                nextDeparture = queue.Count > 0 ? now + queue.Peek().Service : double.PositiveInfinity;
                continue;
            }

            arrivals++;
            estimator.Arrivals.Record();
            nextArrival = now + Exponential(random, lambda);
            var snapshot = estimator.Snapshot();
            if (snapshot.ServiceRateKnown)
            {
                sumLambdaHat += snapshot.ArrivalRate;
                sumMuHat += snapshot.ServiceRate;
                samples++;
            }

            var route = OffloadRoute.Local;
            if (policy is not null)
            {
                double? relayPredicted = relaySlots > 0 && predictRelay && relayRoundTrip.SampleCount > 0
                    ? QueueingFormulas.MultiServerCompletionSeconds(relayInService.Count + relayWaiting.Count, relaySlots, relayRoundTrip.MeanServiceSeconds)
                    : null;
                route = policy.Decide(new OffloadInputs(snapshot, queue.Count, null, null, LocalQueueFull: false, RelayAvailable: true, relayPredicted)).Route;
                if (policy.Overloaded != overloaded)
                {
                    overloaded = policy.Overloaded;
                    modeChanges++;
                }
            }

            if (route == OffloadRoute.Relay)
            {
                offloaded++;
                if (relaySlots > 0)
                {
                    if (relayInService.Count < relaySlots)
                    {
                        var service = Exponential(random, relayRate);
                        relayInService.Add((now, now + service, service));
                    }
                    else
                    {
                        relayWaiting.Enqueue(now);
                    }
                }

                continue;
            }

            local++;
            var serviceTime = Exponential(random, mu);
            queue.Enqueue((now, serviceTime));
            if (queue.Count == 1)
            {
                nextDeparture = now + serviceTime;
            }
        }

        return new SimulationResult(arrivals, local, offloaded, now, sumTimeInSystem / completed, area / now, busy / now,
            samples > 0 ? sumLambdaHat / samples : 0, samples > 0 ? sumMuHat / samples : 0, modeChanges,
            relayCompleted > 0 ? sumRelayTime / relayCompleted : 0);
    }

    /// <summary>Exponential variate by inverse CDF: −ln(1 − U)/rate, U uniform in [0, 1).</summary>
    private static double Exponential(Random random, double rate) => -Math.Log(1.0 - random.NextDouble()) / rate;
}
