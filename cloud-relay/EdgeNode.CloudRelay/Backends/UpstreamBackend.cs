using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using EdgeNode.CloudRelay.Options;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Jobs;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Backends;

/// <summary>
/// The upstream backend: forwards each job to an OpenAI-compatible completions endpoint
/// (<c>POST {Relay:Upstream:Url}/v1/completions</c> of vLLM, TGI or the llama.cpp server), so stateless relay
/// replicas can sit in front of an existing serving engine (DESIGN.md §6).
/// </summary>
/// <remarks>
/// Request mapping (OpenAI "Create completion" API): <c>model</c>, <c>prompt</c>, <c>max_tokens</c> =
/// max_new_tokens, <c>temperature</c>, <c>top_p</c>, <c>seed</c>, <c>stop</c>, <c>stream</c>; <c>top_k</c> and
/// <c>repetition_penalty</c> (extensions understood by vLLM and the llama.cpp server) only when they differ from
/// "off". Answer: <c>choices[0].text</c>, <c>choices[0].finish_reason</c> (<c>length</c> → length; <c>stop</c>
/// → stop when the job has stop sequences, else eos), <c>usage.prompt_tokens</c> / <c>completion_tokens</c>
/// (counted with the GPT-2 tokenizer when absent). A stream job is streamed upstream too (<c>data:</c> chunks
/// up to <c>data: [DONE]</c>), each chunk's text one <c>token</c> event. Upstream 429/503 become the relay's 503
/// with the upstream's Retry-After; other failures (connection, timeout, other statuses, a malformed answer)
/// become 502: no outcome is stored, so the device may re-send.
/// </remarks>
internal sealed class UpstreamBackend : IRelayBackend, IDisposable
{
    private readonly HttpClient _http;
    private readonly Uri _completions;
    private readonly UpstreamBackendOptions _options;
    private readonly ILogger<UpstreamBackend> _logger;

    public UpstreamBackend(IOptions<RelayOptions> options, ILogger<UpstreamBackend> logger)
    {
        _options = options.Value.Upstream;
        _logger = logger;
        var baseUrl = new Uri(_options.Url!, UriKind.Absolute);
        _completions = baseUrl.AbsolutePath.EndsWith("/completions", StringComparison.Ordinal)
            ? baseUrl
            : new Uri(baseUrl.ToString().TrimEnd('/') + "/v1/completions");
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            Timeout = TimeSpan.FromSeconds(_options.TimeoutSeconds),
        };
    }

    public string Name => "upstream";

    public string? NotReadyReason => null;

    public JobError? Check(JobRequest job) => null; // the upstream model's context is the upstream's to check

    public async Task<BackendResult> RunAsync(JobRequest job, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        var stream = onToken is not null;
        using var request = new HttpRequestMessage(HttpMethod.Post, _completions)
        {
            Content = new ByteArrayContent(Body(job, stream)),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (!string.IsNullOrEmpty(_options.ApiKey))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.ApiKey);
        }

        var started = Stopwatch.GetTimestamp();
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (response.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable)
            {
                return BackendResult.Unavailable(503, $"upstream answered {(int)response.StatusCode}", response.Headers.RetryAfter?.Delta);
            }

            if (!response.IsSuccessStatusCode)
            {
                Log.UpstreamFailed(_logger, "HTTP " + ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture));
                return BackendResult.Unavailable(502, $"upstream answered {(int)response.StatusCode}");
            }

            var answer = stream && response.Content.Headers.ContentType?.MediaType == "text/event-stream"
                ? await ReadStreamAsync(response, onToken!, started, cancellationToken)
                : await ReadJsonAsync(response, cancellationToken);
            if (answer is null)
            {
                Log.UpstreamFailed(_logger, "malformed answer");
                return BackendResult.Unavailable(502, "the upstream answer is not an OpenAI completions response");
            }

            var (text, finish, promptTokens, completionTokens, firstTokenMs) = answer.Value;
            if (!stream || firstTokenMs is null)
            {
                onToken?.Invoke(new GeneratedToken(0, -1, text, IsLast: true));
            }

            var totalMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            var prefill = firstTokenMs ?? 0;
            return new BackendResult(BackendResultKind.Generated, text, MapFinish(finish, job),
                promptTokens ?? Gpt2Tokenizer.Shared.CountTokens(job.Prompt),
                completionTokens ?? Gpt2Tokenizer.Shared.CountTokens(text),
                prefill, Math.Max(0, totalMs - prefill));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return BackendResult.Failed(new GenerationError(GenerationError.Canceled, "every client of the job went away"));
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException or JsonException)
        {
            Log.UpstreamFailed(_logger, ex.GetType().Name + ": " + ex.Message);
            return BackendResult.Unavailable(502, ex is OperationCanceledException ? "upstream timed out" : "upstream unreachable: " + ex.Message);
        }
    }

    private byte[] Body(JobRequest job, bool stream)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("model", _options.Model);
            w.WriteString("prompt", job.Prompt);
            w.WriteNumber("max_tokens", job.MaxNewTokens);
            w.WriteNumber("temperature", job.Temperature);
            w.WriteNumber("top_p", job.TopP);
            if (job.TopK > 0)
            {
                w.WriteNumber("top_k", job.TopK);
            }

            if (job.RepetitionPenalty != 1.0f)
            {
                w.WriteNumber("repetition_penalty", job.RepetitionPenalty);
            }

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

            w.WriteBoolean("stream", stream);
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private static async Task<(string Text, string? Finish, int? Prompt, int? Completion, double? FirstTokenMs)?> ReadJsonAsync(
        HttpResponseMessage response, CancellationToken cancellationToken)
    {
        using var doc = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(cancellationToken), default, cancellationToken);
        if (!TryChoice(doc.RootElement, out var text, out var finish))
        {
            return null;
        }

        Usage(doc.RootElement, out var prompt, out var completion);
        return (text, finish, prompt, completion, null);
    }

    private static async Task<(string Text, string? Finish, int? Prompt, int? Completion, double? FirstTokenMs)?> ReadStreamAsync(
        HttpResponseMessage response, Action<GeneratedToken> onToken, long started, CancellationToken cancellationToken)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken), Encoding.UTF8);
        var text = new StringBuilder();
        string? finish = null;
        int? prompt = null, completion = null;
        double? firstTokenMs = null;
        var seq = 0;
        var done = false;
        while (!done && await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (!line.StartsWith("data:", StringComparison.Ordinal))
            {
                continue;
            }

            var data = line[5..].Trim();
            if (data == "[DONE]")
            {
                done = true;
                break;
            }

            using var doc = JsonDocument.Parse(data);
            if (TryChoice(doc.RootElement, out var piece, out var pieceFinish))
            {
                finish = pieceFinish ?? finish;
                if (piece.Length > 0)
                {
                    firstTokenMs ??= Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                    text.Append(piece);
                    onToken(new GeneratedToken(seq++, -1, piece, IsLast: false));
                }
            }

            if (doc.RootElement.TryGetProperty("usage", out _))
            {
                Usage(doc.RootElement, out prompt, out completion);
            }
        }

        return done ? (text.ToString(), finish, prompt, completion, firstTokenMs) : null;
    }

    private static bool TryChoice(JsonElement root, out string text, out string? finish)
    {
        text = "";
        finish = null;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("choices", out var choices) ||
            choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0)
        {
            return false;
        }

        var choice = choices[0];
        if (!choice.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
        {
            return false;
        }

        text = t.GetString()!;
        finish = choice.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null;
        return true;
    }

    private static void Usage(JsonElement root, out int? prompt, out int? completion)
    {
        prompt = completion = null;
        if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
        {
            if (usage.TryGetProperty("prompt_tokens", out var p) && p.TryGetInt32(out var pv))
            {
                prompt = pv;
            }

            if (usage.TryGetProperty("completion_tokens", out var c) && c.TryGetInt32(out var cv))
            {
                completion = cv;
            }
        }
    }

    private static string MapFinish(string? finish, JobRequest job) => finish switch
    {
        "stop" => job.Stop.Count > 0 ? "stop" : "eos",
        _ => "length",
    };

    public void Dispose() => _http.Dispose();
}
