using System.Threading.Channels;
using EdgeNode.Daemon.Mqtt;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;

namespace EdgeNode.Daemon.Tests.Mqtt;

/// <summary>
/// The reconnect loop shared by the broker link and the IoT Hub link (../shared/cases/operations.md 3: reconnect
/// storms). The clock is fake, so it moves only when the test advances it: attempt times prove the spacing.
/// </summary>
public sealed class MqttLinkSupervisorTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task RunAsync_ConnectKeepsFailing_RetriesOnlyAfterEachJitteredBackoff_CappedAtMax()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var attempts = Channel.CreateUnbounded<DateTimeOffset>();
        var delays = Channel.CreateUnbounded<TimeSpan>();
        using var client = new MqttClientFactory().CreateMqttClient();
        var supervisor = new MqttLinkSupervisor
        {
            Client = client,
            Time = time,
            KeepAlive = TimeSpan.FromSeconds(60),
            InitialBackoff = TimeSpan.FromMilliseconds(500),
            MaxBackoff = TimeSpan.FromSeconds(4),
            ConnectOnce = _ =>
            {
                attempts.Writer.TryWrite(time.GetUtcNow());
                throw new IOException("broker refused the connection: ServerUnavailable");
            },
            OnConnectRetry = (reason, delay) =>
            {
                Assert.Equal("broker refused the connection: ServerUnavailable", reason);
                delays.Writer.TryWrite(delay);
            },
        };
        using var stop = new CancellationTokenSource();
        var run = supervisor.RunAsync(stop.Token);

        var previous = await attempts.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        for (var i = 0; i < 8; i++)
        {
            var delay = await delays.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.InRange(delay, TimeSpan.FromTicks(1), TimeSpan.FromSeconds(4));
            Assert.False(attempts.Reader.TryPeek(out _), "no attempt before the backoff passed");
            time.Advance(delay);
            var at = await attempts.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(delay, at - previous); // the clock moved only by the backoff: each attempt waited all of it
            previous = at;
        }

        await stop.CancelAsync();
        await run.WaitAsync(Timeout); // cancellation is quiet
    }
}
