using EdgeNode.Daemon.Cli;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Tests.Cli;

/// <summary>
/// A background loop that fails stops the host (BackgroundServiceExceptionBehavior.StopHost); <c>edgenode run</c> must
/// then exit non-zero so systemd's Restart=on-failure restarts it (a newcomer saw exit 0 after the outbox loop failed
/// on a corrupt store, which left the node down for good). Real generic hosts, no mocks.
/// </summary>
public sealed class RunExitCodeTests
{
    [Fact]
    public async Task ExitCodeAfterStop_BackgroundLoopFailed_IsOneNamingTheLoop()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddHostedService<FailingLoop>();
        using var host = builder.Build();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        await host.StartAsync(timeout.Token);
        await host.WaitForShutdownAsync(timeout.Token); // returns because the failing loop stops the host (as in RunCommand)
        using var error = new StringWriter();
        var code = await RunCommand.ExitCodeAfterStopAsync(host.Services, error);

        Assert.False(timeout.IsCancellationRequested, "the host should have stopped because the loop failed");
        Assert.Equal(1, code);
        Assert.Equal("edgenode: stopped because FailingLoop failed: Page type must be data page" + Environment.NewLine, error.ToString());
    }

    [Fact]
    public async Task ExitCodeAfterStop_CleanStop_IsZero()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddHostedService<IdleLoop>();
        using var host = builder.Build();
        await host.StartAsync();
        await host.StopAsync();
        using var error = new StringWriter();

        Assert.Equal(0, await RunCommand.ExitCodeAfterStopAsync(host.Services, error));
        Assert.Empty(error.ToString());
    }

    private sealed class FailingLoop : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            await Task.Yield();
            throw new InvalidOperationException("Page type must be data page");
        }
    }

    private sealed class IdleLoop : BackgroundService
    {
        protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Delay(Timeout.Infinite, stoppingToken);
    }
}
