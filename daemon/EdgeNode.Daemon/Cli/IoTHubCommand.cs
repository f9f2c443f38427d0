using System.CommandLine;
using EdgeNode.Daemon.IoTHub;

namespace EdgeNode.Daemon.Cli;

/// <summary>
/// <c>edgenode iothub token --connection-string CS --expiry UNIX_SECONDS</c>: prints the device SAS token (DESIGN.md §8),
/// for operators debugging with other MQTT tools. The token goes to stdout only; nothing is logged.
/// </summary>
internal static class IoTHubCommand
{
    public static Command Create()
    {
        var connectionString = new Option<string>("--connection-string")
        {
            Description = "Device connection string HostName=..;DeviceId=..;SharedAccessKey=..",
            Required = true,
        };
        var expiry = new Option<long?>("--expiry") { Description = "Expiry in Unix seconds (UTC); default: one hour from now." };
        var token = new Command("token", "Print the SAS token (MQTT password) of a device connection string.") { connectionString, expiry };
        token.SetAction(r =>
        {
            var parsed = IoTHubConnectionString.TryParse(r.GetValue(connectionString), out var error);
            if (parsed is null || parsed.SharedAccessKey is null)
            {
                Console.Error.WriteLine("edgenode iothub token: invalid connection string: " + (error ?? "SharedAccessKey is missing"));
                return 2;
            }

            var se = r.GetValue(expiry) ?? TimeProvider.System.GetUtcNow().ToUnixTimeSeconds() + 3600;
            if (se <= 0)
            {
                Console.Error.WriteLine("edgenode iothub token: --expiry must be a positive Unix time in seconds");
                return 2;
            }

            Console.WriteLine(parsed.CreateToken(se));
            return 0;
        });
        return new Command("iothub", "Azure IoT Hub helpers.") { token };
    }
}
