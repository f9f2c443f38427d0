using System.CommandLine;
using System.Text.Json;
using EdgeNode.Daemon.Client;

namespace EdgeNode.Daemon.Cli;

/// <summary><c>edgenode submit "prompt"</c>: publishes one job and prints its events (one JSON object per line).</summary>
internal static class SubmitCommand
{
    public static Command Create()
    {
        var prompt = new Argument<string>("prompt") { Description = "The prompt text." };
        var host = new Option<string>("--host") { Description = "Broker host.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Broker port.", DefaultValueFactory = _ => 1883 };
        var id = new Option<string?>("--id") { Description = "Job id (idempotency key); the node assigns one if absent." };
        var maxNew = new Option<int?>("--max-new-tokens") { Description = "Tokens to generate." };
        var temperature = new Option<float?>("--temperature") { Description = "Sampling temperature (0 = greedy)." };
        var seed = new Option<long?>("--seed") { Description = "Sampling seed (same seed, same text)." };
        var topic = new Option<string?>("--topic") { Description = "Submission topic (default {prefix}/jobs)." };
        var prefix = new Option<string>("--topic-prefix") { DefaultValueFactory = _ => "edgenode" };
        var timeout = new Option<int>("--timeout") { Description = "Seconds to wait for the result.", DefaultValueFactory = _ => 120 };
        var command = new Command("submit", "Publish a job (MQTT 5, QoS 1, with a response topic) and print its events.")
        {
            prompt, host, port, id, maxNew, temperature, seed, topic, prefix, timeout,
        };
        command.SetAction(async (r, ct) =>
        {
            var payload = new Dictionary<string, object> { ["prompt"] = r.GetValue(prompt)! };
            if (r.GetValue(id) is { } jobId)
            {
                payload["id"] = jobId;
            }

            if (r.GetValue(maxNew) is { } n)
            {
                payload["max_new_tokens"] = n;
            }

            if (r.GetValue(temperature) is { } t)
            {
                payload["temperature"] = t;
            }

            if (r.GetValue(seed) is { } s)
            {
                payload["seed"] = s;
            }

            try
            {
                await using var client = await JobClient.ConnectAsync(r.GetValue(host)!, r.GetValue(port), r.GetValue(prefix)!, ct);
                var ok = false;
                await foreach (var e in client.SubmitAsync(JsonSerializer.SerializeToUtf8Bytes(payload), TimeSpan.FromSeconds(r.GetValue(timeout)), r.GetValue(topic), ct))
                {
                    Console.WriteLine(e.Json);
                    ok = e.Type == "result";
                }

                return ok ? 0 : 1;
            }
            catch (Exception ex) when (ex is IOException or TimeoutException or MQTTnet.Exceptions.MqttCommunicationException or System.Net.Sockets.SocketException)
            {
                await Console.Error.WriteLineAsync("edgenode submit: " + ex.Message);
                return 1;
            }
        });
        return command;
    }
}
