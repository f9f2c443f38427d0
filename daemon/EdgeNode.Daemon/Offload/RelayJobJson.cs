using System.Text.Json;
using EdgeNode.Shared.Jobs;

namespace EdgeNode.Daemon.Offload;

/// <summary>Writes a stored job as the request JSON of DESIGN.md §3 for the relay's <c>POST /v1/jobs</c>.</summary>
internal static class RelayJobJson
{
    /// <summary>The job's JSON with its id and <paramref name="deadlineMs"/> (the time left, or null) as <c>deadline_ms</c>.
    /// <c>reply_to</c> and <c>stream</c> are not sent: the node answers the MQTT client itself.</summary>
    public static byte[] Write(JobRequest job, int? deadlineMs)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("id", job.Id);
            w.WriteString("prompt", job.Prompt);
            w.WriteNumber("max_new_tokens", job.MaxNewTokens);
            w.WriteNumber("temperature", job.Temperature);
            w.WriteNumber("top_k", job.TopK);
            w.WriteNumber("top_p", job.TopP);
            w.WriteNumber("repetition_penalty", job.RepetitionPenalty);
            if (job.Seed is { } seed)
            {
                w.WriteNumber("seed", seed);
            }

            if (job.Stop.Count > 0)
            {
                w.WriteStartArray("stop");
                foreach (var s in job.Stop)
                {
                    w.WriteStringValue(s);
                }

                w.WriteEndArray();
            }

            if (deadlineMs is { } d)
            {
                w.WriteNumber("deadline_ms", d);
            }

            w.WriteNumber("priority", job.Priority);
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    /// <summary>The <c>error.code</c> of an error event (for the failed-by-reason counter), or null.</summary>
    public static string? ErrorCode(byte[] finalEvent)
    {
        try
        {
            using var doc = JsonDocument.Parse(finalEvent);
            return doc.RootElement.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object &&
                   e.TryGetProperty("code", out var c) ? c.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
