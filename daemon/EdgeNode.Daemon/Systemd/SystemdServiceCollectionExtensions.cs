using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging.Console;

namespace EdgeNode.Daemon.Systemd;

/// <summary>Registration of the systemd integration (DESIGN.md §8, daemon/README.md "systemd").</summary>
internal static class SystemdServiceCollectionExtensions
{
    /// <summary>
    /// Replaces <c>AddSystemd()</c>: journal-friendly console logs (priority prefixes, no ANSI colours, no
    /// "Press Ctrl+C" banner) when systemd started the process, and the notify protocol
    /// (<see cref="SystemdNotifyService"/>: READY=1 at readiness, not at host start; STATUS=, WATCHDOG=1,
    /// STOPPING=1) whenever <c>NOTIFY_SOCKET</c> is set. SIGTERM is handled by the default console lifetime.
    /// Call it before the node's hosted services are added so that it starts first and stops last.
    /// </summary>
    public static IServiceCollection AddSystemdNotify(this IServiceCollection services)
    {
        if (SystemdHelpers.IsSystemdService())
        {
            services.Configure<ConsoleLoggerOptions>(o => o.FormatterName = ConsoleFormatterNames.Systemd);
            services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        }

        services.TryAddSingleton<ISystemdNotifier, SystemdNotifier>();
        services.AddHostedService<SystemdNotifyService>();
        return services;
    }

    /// <summary>Registers <see cref="LoopHeartbeat"/> (the loops' liveness) and the test-only <see cref="TestHooks"/>.</summary>
    public static IServiceCollection AddLoopHeartbeat(this IServiceCollection services)
    {
        services.TryAddSingleton<LoopHeartbeat>();
        services.TryAddSingleton(sp => TestHooks.FromConfiguration(sp.GetRequiredService<IConfiguration>()));
        return services;
    }
}
