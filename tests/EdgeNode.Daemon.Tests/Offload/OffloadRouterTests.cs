using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Offload;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace EdgeNode.Daemon.Tests.Offload;

/// <summary>The relay side of the routing decision: predicted completion from the measured round trips (DESIGN.md §5).</summary>
public sealed class OffloadRouterTests
{
    private static OffloadRouter Router(FakeTimeProvider time) =>
        new(Microsoft.Extensions.Options.Options.Create(new OffloadOptions
        {
            RelayUrl = "http://127.0.0.1:9",
            DeviceKey = Convert.ToBase64String(new byte[32]),
            MaxConcurrent = 4,
            ArrivalWindow = TimeSpan.FromSeconds(10),
        }), Microsoft.Extensions.Options.Options.Create(new NodeOptions { Id = "n1" }), new NodeMetrics(), time, NullLoggerFactory.Instance);

    [Fact]
    public void PredictRelaySeconds_NoAnswerYet_IsUnknown()
    {
        using var router = Router(new FakeTimeProvider());

        Assert.Null(router.PredictRelaySeconds(0));
        Assert.Equal(0, router.RelayRoundTripSeconds);
    }

    [Fact]
    public void PredictRelaySeconds_RecentRoundTrips_IsTheMeanPlusTheWaitForASlot()
    {
        var time = new FakeTimeProvider();
        using var router = Router(time);
        router.RecordRelayRoundTrip(TimeSpan.FromMilliseconds(100));
        router.RecordRelayRoundTrip(TimeSpan.FromMilliseconds(300));

        Assert.Equal(0.2, router.PredictRelaySeconds(0)!.Value, 9);
        Assert.Equal(0.2, router.PredictRelaySeconds(3)!.Value, 9);   // a slot of 4 still free
        Assert.Equal(0.35, router.PredictRelaySeconds(6)!.Value, 9);  // 6 − 4 + 1 = 3 must finish first: 0.2 + 3 × 0.2 / 4
    }

    [Fact]
    public void PredictRelaySeconds_OldAnswersAndNothingAtTheRelay_ForgottenSoTheNextJobMeasuresAgain()
    {
        var time = new FakeTimeProvider();
        using var router = Router(time);
        router.RecordRelayRoundTrip(TimeSpan.FromSeconds(2)); // e.g. the relay's cold start

        time.Advance(TimeSpan.FromSeconds(11));

        // Jobs still at the relay: their answers will refresh the estimate, so it stands.
        Assert.Equal(2.0, router.PredictRelaySeconds(1)!.Value, 9);
        // Nothing there and the last answer is older than the arrival window: unknown, and forgotten.
        Assert.Null(router.PredictRelaySeconds(0));
        Assert.Equal(0, router.RelayRoundTripSeconds);
        router.RecordRelayRoundTrip(TimeSpan.FromMilliseconds(50));
        Assert.Equal(0.05, router.PredictRelaySeconds(0)!.Value, 9);
    }
}
