using System.CommandLine;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Queue;
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
            await host.RunAsync(cancellationToken);
            return 0;
        }
        catch (OptionsValidationException ex)
        {
            await Console.Error.WriteLineAsync("edgenode: invalid configuration: " + string.Join("; ", ex.Failures));
            return 2;
        }
        catch (InvalidOperationException ex) when (ex.Message.Contains("configuration", StringComparison.OrdinalIgnoreCase))
        {
            await Console.Error.WriteLineAsync("edgenode: invalid configuration: " + ex.Message);
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
}
