using System.Globalization;
using System.Net.Sockets;
using EdgeNode.Daemon.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Systemd;

/// <summary>
/// The daemon's side of the systemd notify protocol (<c>Type=notify</c>; sd_notify(3), systemd.service(5)):
/// <list type="bullet">
/// <item><c>STATUS=</c> with <see cref="NodeState.StartupStage"/> while starting ("opening job store",
/// "loading model", "connecting to broker"), polled every 250 ms and sent when it changes;</item>
/// <item><c>READY=1</c> once every hosted service has started and the node is ready
/// (<see cref="NodeState.WhenReadyAsync"/>: store open, model loaded, broker connected), never earlier;</item>
/// <item><c>WATCHDOG=1</c> every <c>WATCHDOG_USEC</c>/2 (sd_watchdog_enabled(3)) after READY, but only while
/// the executor and the ingest loop are alive (<see cref="LoopHeartbeat"/>: no loop busy without progress for
/// longer than that half-period). Otherwise a <c>STATUS=watchdog withheld: ...</c> naming the stalled loop is
/// sent instead, so systemd restarts the service after <c>WatchdogSec</c> and <c>systemctl status</c> says why;</item>
/// <item><c>STOPPING=1</c> as soon as shutdown begins. Pings continue while the running job finishes
/// (this service is registered first, so it stops last).</item>
/// </list>
/// Without <c>NOTIFY_SOCKET</c> it does nothing. Datagrams go through the hosting package's
/// <see cref="ISystemdNotifier"/>; <c>AddSystemd()</c>'s own lifetime is not used because it sends READY=1 as
/// soon as the host has started, before the broker is connected.
/// </summary>
internal sealed class SystemdNotifyService(
    ISystemdNotifier notifier,
    NodeState state,
    LoopHeartbeat heartbeat,
    IHostApplicationLifetime lifetime,
    TimeProvider time,
    ILogger<SystemdNotifyService> logger) : BackgroundService
{
    private static readonly TimeSpan StatusPoll = TimeSpan.FromMilliseconds(250);
    private CancellationTokenRegistration _stopping;

    /// <summary>The watchdog ping period (half of <c>WATCHDOG_USEC</c>) for this process, or null when the watchdog is off.</summary>
    public TimeSpan? WatchdogInterval { get; } = ReadWatchdogInterval(
        Environment.GetEnvironmentVariable("WATCHDOG_USEC"), Environment.GetEnvironmentVariable("WATCHDOG_PID"), Environment.ProcessId);

    /// <summary>
    /// sd_watchdog_enabled(3): the watchdog is on when <c>WATCHDOG_USEC</c> is a positive integer (microseconds)
    /// and <c>WATCHDOG_PID</c> is unset or names this process. Returns half the timeout, the ping period
    /// systemd.service(5) recommends, or null.
    /// </summary>
    internal static TimeSpan? ReadWatchdogInterval(string? watchdogUsec, string? watchdogPid, int processId)
    {
        if (!ulong.TryParse(watchdogUsec, NumberStyles.None, CultureInfo.InvariantCulture, out var usec) || usec == 0)
        {
            return null;
        }

        if (!string.IsNullOrEmpty(watchdogPid)
            && (!int.TryParse(watchdogPid, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid != processId))
        {
            return null;
        }

        return TimeSpan.FromMicroseconds(usec / 2.0);
    }

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        if (notifier.IsEnabled)
        {
            _stopping = lifetime.ApplicationStopping.Register(() => Send("STOPPING=1\nSTATUS=stopping: finishing the running job, flushing the outbox"));
        }

        return base.StartAsync(cancellationToken);
    }

    public override void Dispose()
    {
        _stopping.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!notifier.IsEnabled)
        {
            return;
        }

        try
        {
            await ReportStartupAsync(stoppingToken);
            var model = state.Model;
            Send(string.Create(CultureInfo.InvariantCulture,
                $"READY=1\nSTATUS=ready: model {Path.GetFileName(model?.Path)} on {model?.ExecutionProvider}, broker connected"));
            Log.Ready(logger, WatchdogInterval?.TotalMilliseconds ?? 0);
            if (WatchdogInterval is { } interval)
            {
                await RunWatchdogAsync(interval, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Sends STATUS= on every startup stage change until the host has started and the node is ready.</summary>
    private async Task ReportStartupAsync(CancellationToken cancellationToken)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var onStarted = lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        var ready = Task.WhenAll(started.Task, state.WhenReadyAsync(cancellationToken));
        using var poll = new PeriodicTimer(StatusPoll, time);
        string? sent = null;
        while (!ready.IsCompleted)
        {
            var stage = state.StartupStage;
            if (stage != sent)
            {
                Send("STATUS=starting: " + stage);
                sent = stage;
            }

            await Task.WhenAny(ready, poll.WaitForNextTickAsync(cancellationToken).AsTask());
            cancellationToken.ThrowIfCancellationRequested();
        }

        await ready;
    }

    private async Task RunWatchdogAsync(TimeSpan interval, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval, time);
        var withheld = false;
        do
        {
            var stalled = heartbeat.Stalled(interval);
            if (stalled.Count == 0)
            {
                Send(withheld ? "WATCHDOG=1\nSTATUS=ready" : "WATCHDOG=1");
                withheld = false;
                continue;
            }

            var (name, since) = stalled[0];
            Send(string.Create(CultureInfo.InvariantCulture,
                $"STATUS=watchdog withheld: the {name} loop has made no progress for {since.TotalSeconds:F1} s"));
            if (!withheld)
            {
                Log.WatchdogWithheld(logger, name, since.TotalMilliseconds);
            }

            withheld = true;
        }
        while (await timer.WaitForNextTickAsync(cancellationToken));
    }

    private void Send(string message)
    {
        try
        {
            notifier.Notify(new ServiceState(message));
        }
        catch (SocketException ex)
        {
            // The service manager went away or the socket is not ours: keep serving, say so once per message.
            Log.NotifyFailed(logger, ex.SocketErrorCode.ToString());
        }
    }
}

/// <summary>Log messages of the systemd integration (event ids 1300-1399).</summary>
internal static partial class Log
{
    [LoggerMessage(1300, LogLevel.Information, "Sent READY=1 to systemd (watchdog ping period {IntervalMs} ms; 0 = watchdog off)")]
    public static partial void Ready(ILogger logger, double intervalMs);

    [LoggerMessage(1301, LogLevel.Error, "Withholding the systemd watchdog ping: the {Loop} loop has made no progress for {SinceMs:F0} ms; systemd will restart the service")]
    public static partial void WatchdogWithheld(ILogger logger, string loop, double sinceMs);

    [LoggerMessage(1302, LogLevel.Warning, "Could not send a notification to systemd: {Error}")]
    public static partial void NotifyFailed(ILogger logger, string error);
}
