using System.CommandLine;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Cli;

/// <summary><c>edgenode run [--Section:Key=value ...]</c>: runs the daemon until SIGTERM/SIGINT.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var command = new Command("run", "Run the node (configuration: appsettings.json, /etc/edgenode/edgenode.json, EDGENODE__Section__Key, --Section:Key=value).")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction((parseResult, cancellationToken) => RunAsync(parseResult.UnmatchedTokens, cancellationToken));
        return command;
    }

    /// <summary>Builds and runs the host; maps start-up failures to a message on stderr and a non-zero exit code.</summary>
    internal static async Task<int> RunAsync(IReadOnlyList<string> configArgs, CancellationToken cancellationToken)
    {
        foreach (var arg in configArgs)
        {
            if (!arg.StartsWith("--", StringComparison.Ordinal) || !arg.Contains('=', StringComparison.Ordinal))
            {
                await Console.Error.WriteLineAsync($"edgenode run: unexpected argument '{arg}'; configuration is given as --Section:Key=value");
                return 2;
            }
        }

        try
        {
            using var host = EdgeNodeHost.CreateBuilder(configArgs).Build();

            // Bind and validate every options section before the host starts, so a configuration error is one
            // clear line (below) rather than the host's "Hosting failed to start" log with a stack trace.
            host.Services.GetService<IStartupValidator>()?.Validate();
            await host.StartAsync(cancellationToken);
            await host.WaitForShutdownAsync(cancellationToken); // stops the host but, unlike RunAsync, does not dispose it
            return await ExitCodeAfterStopAsync(host.Services, Console.Error);
        }
        catch (OptionsValidationException ex)
        {
            await Console.Error.WriteLineAsync("edgenode: invalid configuration: " + string.Join("; ", ex.Failures.Select(ConfigurationErrors.DescribeValidationFailure)));
            return 2;
        }
        catch (Exception ex) when (ConfigurationErrors.DescribeStartupError(ex) is { } problem)
        {
            await Console.Error.WriteLineAsync("edgenode: invalid configuration: " + problem);
            return 2;
        }
        catch (StoreLockedException ex)
        {
            await Console.Error.WriteLineAsync("edgenode: " + ex.Message);
            return 1;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await Console.Error.WriteLineAsync("edgenode: start failed: " + ex.Message);
            return 1;
        }
    }

    /// <summary>
    /// The exit code once the host has stopped: 1 (with one line naming the service and its error) when a background
    /// loop failed and stopped the host (<see cref="BackgroundServiceExceptionBehavior.StopHost"/>), else 0. A
    /// non-zero code lets systemd's <c>Restart=on-failure</c> restart the node; 0 would leave it down.
    /// </summary>
    internal static async Task<int> ExitCodeAfterStopAsync(IServiceProvider services, TextWriter error)
    {
        var failed = services.GetServices<IHostedService>().OfType<BackgroundService>()
            .FirstOrDefault(s => s.ExecuteTask is { IsFaulted: true });
        if (failed is null)
        {
            return 0;
        }

        var reason = failed.ExecuteTask!.Exception?.GetBaseException().Message ?? "unknown error";
        await error.WriteLineAsync($"edgenode: stopped because {failed.GetType().Name} failed: {reason}");
        return 1;
    }
}
