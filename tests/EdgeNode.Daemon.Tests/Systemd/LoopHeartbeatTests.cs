using EdgeNode.Daemon.Systemd;
using Microsoft.Extensions.Time.Testing;

namespace EdgeNode.Daemon.Tests.Systemd;

public sealed class LoopHeartbeatTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    [Fact]
    public void Stalled_BusyLoopWithoutBeatPastTheBound_IsNamedWithItsDuration()
    {
        var time = new FakeTimeProvider();
        var heartbeat = new LoopHeartbeat(time);
        var executor = heartbeat.Register("executor");
        var ingest = heartbeat.Register("ingest");

        executor.Beat();
        ingest.Beat();
        time.Advance(TimeSpan.FromSeconds(10));
        ingest.Beat();
        time.Advance(TimeSpan.FromSeconds(6));

        var stalled = Assert.Single(heartbeat.Stalled(Bound));
        Assert.Equal("executor", stalled.Name);
        Assert.Equal(TimeSpan.FromSeconds(16), stalled.Since);
    }

    [Fact]
    public void Stalled_IdleLoop_NeverStalledHoweverLongItWaits()
    {
        var time = new FakeTimeProvider();
        var heartbeat = new LoopHeartbeat(time);
        var loop = heartbeat.Register("ingest");
        Assert.Empty(heartbeat.Stalled(Bound));

        loop.Beat();
        loop.Idle();
        time.Advance(TimeSpan.FromHours(1));

        Assert.Empty(heartbeat.Stalled(Bound));
    }

    [Fact]
    public void Stalled_BeatAtTheBound_IsAlive_OneTickLater_IsStalled()
    {
        var time = new FakeTimeProvider();
        var heartbeat = new LoopHeartbeat(time);
        heartbeat.Register("executor").Beat();

        time.Advance(Bound);
        Assert.Empty(heartbeat.Stalled(Bound));
        time.Advance(TimeSpan.FromTicks(1));
        Assert.Single(heartbeat.Stalled(Bound));
    }
}

public sealed class WatchdogIntervalTests
{
    [Theory]
    [InlineData("30000000", null, 15_000)]     // WatchdogSec=30: ping every 15 s (systemd.service(5): half the timeout)
    [InlineData("3000000", "4242", 1_500)]      // WATCHDOG_PID names this process
    [InlineData("1", null, 0.0005)]
    public void ReadWatchdogInterval_Enabled_HalfTheTimeout(string usec, string? pid, double expectedMs)
    {
        var interval = SystemdNotifyService.ReadWatchdogInterval(usec, pid, processId: 4242);
        Assert.Equal(expectedMs, interval!.Value.TotalMilliseconds, 6);
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("0", null)]
    [InlineData("-5", null)]
    [InlineData("abc", null)]
    [InlineData("30000000", "1")]       // the watchdog is for another process (sd_watchdog_enabled(3))
    [InlineData("30000000", "x")]
    public void ReadWatchdogInterval_Disabled_Null(string? usec, string? pid) =>
        Assert.Null(SystemdNotifyService.ReadWatchdogInterval(usec, pid, processId: 4242));
}
