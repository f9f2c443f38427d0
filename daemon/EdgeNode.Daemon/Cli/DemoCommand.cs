using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using EdgeNode.Daemon.Client;
using EdgeNode.Daemon.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace EdgeNode.Daemon.Cli;

/// <summary>
/// <c>edgenode demo</c>: the main job end to end in one process. Starts the embedded broker and the node
/// on a free loopback port with a temporary state directory, submits a handful of jobs over MQTT
/// (including an invalid one), prints each outcome and exits 0 when every job ended as expected. A local
/// cloud relay (<c>edgenode-relay</c>, in-process on a free loopback port) is started too, and a final burst of
/// jobs shows queue-aware offload (DESIGN.md §5): while the local queue is full, jobs run on the relay.
/// </summary>
internal static class DemoCommand
{
    private static readonly (string Label, string Payload, string ExpectedStatus)[] Jobs =
    [
        ("greedy", """{"id":"demo-1","prompt":"Hello, my name is","max_new_tokens":24,"temperature":0}""", "SUCCEEDED"),
        ("sampled, seed 7", """{"id":"demo-2","prompt":"The weather on the coast today is","max_new_tokens":24,"temperature":0.8,"top_k":40,"top_p":0.95,"seed":7}""", "SUCCEEDED"),
        ("priority 5", """{"id":"demo-3","prompt":"Edge devices send sensor readings to","max_new_tokens":16,"priority":5,"temperature":0}""", "SUCCEEDED"),
        ("resubmitted id", """{"id":"demo-1","prompt":"Hello, my name is","max_new_tokens":24,"temperature":0}""", "SUCCEEDED"),
        ("invalid: prompt is a number", """{"id":"demo-bad","prompt":42}""", "REJECTED"),
    ];

    private const int BurstSize = 8;

    public static Command Create()
    {
        var command = new Command("demo", "Start the embedded broker and the node in one process, submit a few jobs and print their results.");
        command.SetAction((_, ct) => RunAsync(Console.Out, ct));
        return command;
    }

    internal static async Task<int> RunAsync(TextWriter output, CancellationToken cancellationToken)
    {
        var stateDirectory = Path.Combine(Path.GetTempPath(), "edgenode-demo-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        var port = FreeLoopbackPort();
        var deviceKey = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        await output.WriteLineAsync("Starting a local cloud relay (edgenode-relay) in-process...");
        await using var relay = CloudRelay.Hosting.RelayApp.Build([], new Dictionary<string, string?>
        {
            ["Relay:Url"] = "http://127.0.0.1:0",
            ["Relay:StateDirectory"] = Path.Combine(stateDirectory, "relay"),
            ["Relay:Devices:demo-node:Key"] = Convert.ToBase64String(deviceKey),
            ["Relay:Embedded:IntraOpThreads"] = "1",
            ["Logging:LogLevel:Default"] = "Warning",
        });
        await relay.StartAsync(cancellationToken);
        var relayUrl = relay.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.First();
        var overrides = new Dictionary<string, string?>
        {
            ["Node:Id"] = "demo-node",
            ["Node:StateDirectory"] = stateDirectory,
            ["Mqtt:Host"] = "",
            ["Mqtt:Embedded:Port"] = port.ToString(CultureInfo.InvariantCulture),
            ["Admin:Url"] = "",
            ["Logging:LogLevel:Default"] = "Warning",
            ["Offload:RelayUrl"] = relayUrl,
            ["Offload:DeviceKey"] = Convert.ToBase64String(deviceKey),
            // A short local queue, so that the burst below overflows it and the overflow goes to the relay.
            ["Queue:MaxJobs"] = "2",
        };
        try
        {
            await output.WriteLineAsync($"Starting EdgeNode with an embedded MQTT broker on 127.0.0.1:{port} (state in {stateDirectory})...");
            using var host = EdgeNodeHost.CreateBuilder([], overrides).Build();
            await host.StartAsync(cancellationToken);
            var state = host.Services.GetRequiredService<NodeState>();
            using var readyTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            readyTimeout.CancelAfter(TimeSpan.FromSeconds(60));
            await state.WhenReadyAsync(readyTimeout.Token);
            var model = state.Model!;
            await output.WriteLineAsync($"Ready: model {Path.GetFileName(model.Path)} ({model.Precision}, {model.NLayer} layers, n_embd {model.NEmbd}) on {model.ExecutionProvider}. The demonstration model has random weights, so its text is not meaningful.");
            await output.WriteLineAsync();

            var failures = 0;
            await using (var client = await JobClient.ConnectAsync("127.0.0.1", port, cancellationToken: cancellationToken))
            {
                foreach (var (label, payload, expected) in Jobs)
                {
                    var events = await client.RunAsync(Encoding.UTF8.GetBytes(payload), TimeSpan.FromSeconds(120), cancellationToken: cancellationToken);
                    var final = events[^1];
                    failures += final.Status == expected ? 0 : 1;
                    await output.WriteLineAsync(Describe(label, payload, events));
                }

                await output.WriteLineAsync();
                await output.WriteLineAsync($"Burst: {BurstSize} jobs at once; the local queue holds 2, so the overflow is offloaded to the relay at {relayUrl}.");
                var burst = await Task.WhenAll(Enumerable.Range(1, BurstSize).Select(i => client.RunAsync(
                    Encoding.UTF8.GetBytes($$"""{"id":"burst-{{i}}","prompt":"Reading {{i}} from the sensor is","max_new_tokens":16,"seed":{{i}}}"""),
                    TimeSpan.FromSeconds(120), cancellationToken: cancellationToken)));
                var onRelay = 0;
                foreach (var events in burst)
                {
                    using var final = JsonDocument.Parse(events[^1].Json);
                    var root = final.RootElement;
                    var status = root.GetProperty("status").GetString();
                    var route = Route(events);
                    var ranOn = root.TryGetProperty("executed_on", out var e) ? e.GetString() : "-";
                    onRelay += ranOn == "relay" ? 1 : 0;
                    failures += status == "SUCCEEDED" ? 0 : 1;
                    await output.WriteLineAsync($"[burst] job {root.GetProperty("id").GetString()}: {status}, routed {route ?? "-"}, ran on {ranOn}");
                }

                await output.WriteLineAsync($"{onRelay} of {BurstSize} burst jobs ran on the relay, {BurstSize - onRelay} locally.");
            }

            await host.StopAsync(cancellationToken);
            await relay.StopAsync(cancellationToken);
            await output.WriteLineAsync();
            await output.WriteLineAsync(failures == 0 ? "Demo finished: every job ended as expected." : $"Demo finished with {failures} unexpected outcome(s).");
            return failures == 0 ? 0 : 1;
        }
        finally
        {
            TryDelete(stateDirectory);
        }
    }

    private static string Describe(string label, string payload, IReadOnlyList<JobEvent> events)
    {
        using var request = JsonDocument.Parse(payload);
        using var final = JsonDocument.Parse(events[^1].Json);
        var root = final.RootElement;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"[{label}] job {root.GetProperty("id").GetString()}: {root.GetProperty("status").GetString()}");
        sb.Append(CultureInfo.InvariantCulture, $" (events: {string.Join(" -> ", events.Select(e => e.Type))})");
        if (root.TryGetProperty("text", out var text))
        {
            var timings = root.GetProperty("timings_ms");
            var usage = root.GetProperty("usage");
            sb.AppendLine();
            sb.Append(CultureInfo.InvariantCulture, $"    ran on {root.GetProperty("executed_on").GetString()} ({root.GetProperty("node").GetString()}), ");
            sb.Append(CultureInfo.InvariantCulture, $"finish_reason {root.GetProperty("finish_reason").GetString()}, {usage.GetProperty("prompt_tokens").GetInt32()} prompt + {usage.GetProperty("completion_tokens").GetInt32()} new tokens, ");
            sb.Append(CultureInfo.InvariantCulture, $"queue {timings.GetProperty("queue").GetDouble():F1} ms, prefill {timings.GetProperty("prefill").GetDouble():F1} ms, decode {timings.GetProperty("decode").GetDouble():F1} ms, total {timings.GetProperty("total").GetDouble():F1} ms");
            sb.AppendLine();
            sb.Append(CultureInfo.InvariantCulture, $"    {request.RootElement.GetProperty("prompt").GetString()}|{text.GetString()}");
        }
        else if (root.TryGetProperty("error", out var error))
        {
            sb.Append(CultureInfo.InvariantCulture, $"\n    error {error.GetProperty("code").GetString()}: {error.GetProperty("message").GetString()}");
        }

        return sb.ToString();
    }

    /// <summary>The <c>route</c> of a job's <c>accepted</c> event (local or relay), or null when it was refused.</summary>
    private static string? Route(IReadOnlyList<JobEvent> events)
    {
        foreach (var accepted in events.Where(e => e.Type == "accepted"))
        {
            using var doc = JsonDocument.Parse(accepted.Json);
            return doc.RootElement.GetProperty("route").GetString();
        }

        return null;
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }
}
