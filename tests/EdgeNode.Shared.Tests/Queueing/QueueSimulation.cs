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
    int ModeChanges)
{
    public double MeasuredArrivalRate => Arrivals / Horizon;

    public double MeasuredLocalArrivalRate => Local / Horizon;
}

/// <summary>
/// A seeded discrete-event simulation of one node: Poisson arrivals at rate λ (exponential inter-arrival times by
/// inverse-CDF sampling, −ln(U)/λ), one FIFO server with exponential service at rate μ, and optionally the
/// <see cref="OffloadPolicy"/> routing each arrival to the relay (an infinite server outside the node). The events
/// (arrivals and departures) are processed in time order; a <see cref="FakeTimeProvider"/> is advanced to each
/// event so the <see cref="QueueEstimator"/> sees the simulated clock. The number in the local system is
/// integrated over time for L; W is the mean of the local jobs' departure − arrival.
/// </summary>
internal static class QueueSimulation
{
    public static SimulationResult Run(double lambda, double mu, int jobs, int seed, OffloadPolicy? policy = null, TimeSpan? arrivalWindow = null)
    {
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

        while (arrivals < jobs || queue.Count > 0)
        {
            var next = arrivals < jobs ? Math.Min(nextArrival, nextDeparture) : nextDeparture;
            area += queue.Count * (next - now);
            if (queue.Count > 0)
            {
                busy += next - now;
            }

            time.Advance(TimeSpan.FromSeconds(next - now));
            now = next;

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
                route = policy.Decide(new OffloadInputs(snapshot, queue.Count, null, null, LocalQueueFull: false, RelayAvailable: true)).Route;
                if (policy.Overloaded != overloaded)
                {
                    overloaded = policy.Overloaded;
                    modeChanges++;
                }
            }

            if (route == OffloadRoute.Relay)
            {
                offloaded++;
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
            samples > 0 ? sumLambdaHat / samples : 0, samples > 0 ? sumMuHat / samples : 0, modeChanges);
    }

    /// <summary>Exponential variate by inverse CDF: −ln(1 − U)/rate, U uniform in [0, 1).</summary>
    private static double Exponential(Random random, double rate) => -Math.Log(1.0 - random.NextDouble()) / rate;
}
