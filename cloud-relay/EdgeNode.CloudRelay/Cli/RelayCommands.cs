using System.CommandLine;
using System.Security.Cryptography;
using EdgeNode.CloudRelay.Hosting;
using EdgeNode.Shared.Configuration;
using EdgeNode.Shared.Offload;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Cli;

/// <summary>The <c>edgenode-relay</c> command line: run (default), <c>token</c>, <c>key</c>.</summary>
internal static class RelayCommands
{
    public static RootCommand Create()
    {
        var root = new RootCommand("edgenode-relay: the EdgeNode cloud relay (POST /v1/jobs). Configuration: appsettings.json, /etc/edgenode/relay.json, EDGENODE_RELAY__Section__Key, --Section:Key=value.")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        root.SetAction((r, ct) => RunAsync(r.UnmatchedTokens, ct));
        root.Subcommands.Add(TokenCommand());
        root.Subcommands.Add(KeyCommand());
        return root;
    }

    /// <summary>Runs the relay until SIGTERM/SIGINT; start-up failures give a message and a non-zero exit code.</summary>
    internal static async Task<int> RunAsync(IReadOnlyList<string> configArgs, CancellationToken cancellationToken)
    {
        foreach (var arg in configArgs)
        {
            if (!arg.StartsWith("--", StringComparison.Ordinal) || !arg.Contains('=', StringComparison.Ordinal))
            {
                await Console.Error.WriteLineAsync($"edgenode-relay: unexpected argument '{arg}'; configuration is given as --Section:Key=value");
                return 2;
            }
        }

        try
        {
            await using var app = RelayApp.Build(configArgs);
            app.Services.GetService<IStartupValidator>()?.Validate(); // one clear line below, not the host's stack-trace log
            await app.RunAsync(cancellationToken);
            return 0;
        }
        catch (OptionsValidationException ex)
        {
            await Console.Error.WriteLineAsync("edgenode-relay: invalid configuration: " + string.Join("; ", ex.Failures.Select(ConfigurationErrors.DescribeValidationFailure)));
            return 2;
        }
        catch (Exception ex) when (ConfigurationErrors.DescribeStartupError(ex) is { } problem)
        {
            await Console.Error.WriteLineAsync("edgenode-relay: invalid configuration: " + problem);
            return 2;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await Console.Error.WriteLineAsync("edgenode-relay: start failed: " + ex.Message);
            return 1;
        }
    }

    private static Command TokenCommand()
    {
        var device = new Option<string>("--device") { Description = "Device id (Relay:Devices:{id}).", Required = true };
        var key = new Option<string>("--key") { Description = "The device's Base64 key.", Required = true };
        var expiry = new Option<long?>("--expiry") { Description = "Expiry, Unix seconds (default: now + --ttl)." };
        var ttl = new Option<int>("--ttl") { Description = "Lifetime in seconds when --expiry is not given.", DefaultValueFactory = _ => 3600 };
        var audience = new Option<string>("--audience") { Description = "The relay's Relay:Audience.", DefaultValueFactory = _ => SharedAccessSignature.DefaultAudience };
        var command = new Command("token", "Print an Authorization header value (SharedAccessSignature ...) for a device.")
        {
            device, key, expiry, ttl, audience,
        };
        command.SetAction(r =>
        {
            var keyText = r.GetValue(key)!;
            var bytes = new byte[keyText.Length];
            if (!Convert.TryFromBase64String(keyText, bytes, out var written) || written == 0)
            {
                Console.Error.WriteLine("edgenode-relay token: --key must be Base64");
                return 2;
            }

            var id = r.GetValue(device)!;
            var se = r.GetValue(expiry) ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds() + r.GetValue(ttl);
            Console.WriteLine(SharedAccessSignature.Create(SharedAccessSignature.DeviceResource(r.GetValue(audience)!, id), bytes.AsSpan(0, written), se, id));
            return 0;
        });
        return command;
    }

    private static Command KeyCommand()
    {
        var command = new Command("key", "Print a new random device key (32 bytes, Base64) for Relay:Devices:{id}:Key and the device's configuration.");
        command.SetAction(_ =>
        {
            Console.WriteLine(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
            return 0;
        });
        return command;
    }
}
