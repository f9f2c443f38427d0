using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace EdgeNode.Shared.Jobs;

/// <summary>
/// Builds the events a job publishes on its reply topic (DESIGN.md §3) as UTF-8 JSON with a fixed field
/// order, so the same inputs always give the same bytes (an outcome re-published after a crash is
/// byte-identical, DESIGN.md §4 rule 2). Millisecond figures are rounded to 0.1 ms (midpoint away from zero).
/// </summary>
/// <remarks>
/// Text is written with <see cref="JavaScriptEncoder.UnsafeRelaxedJsonEscaping"/>: non-ASCII stays UTF-8 and
/// only JSON-mandatory characters are escaped (the payloads are never embedded in HTML). An unpaired UTF-16
/// surrogate in text (a token that ends inside a character) is written as U+FFFD. Each call uses a
/// thread-local writer and buffer, so building a <c>token</c> event allocates only the returned array.
/// </remarks>
public static class JobEvents
{
    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
        SkipValidation = false,
    };

    private static readonly JsonEncodedText TypeName = JsonEncodedText.Encode("type");
    private static readonly JsonEncodedText IdName = JsonEncodedText.Encode("id");
    private static readonly JsonEncodedText StatusName = JsonEncodedText.Encode("status");
    private static readonly JsonEncodedText RouteName = JsonEncodedText.Encode("route");
    private static readonly JsonEncodedText NodeName = JsonEncodedText.Encode("node");
    private static readonly JsonEncodedText SeqName = JsonEncodedText.Encode("seq");
    private static readonly JsonEncodedText TextName = JsonEncodedText.Encode("text");
    private static readonly JsonEncodedText FinishReasonName = JsonEncodedText.Encode("finish_reason");
    private static readonly JsonEncodedText UsageName = JsonEncodedText.Encode("usage");
    private static readonly JsonEncodedText PromptTokensName = JsonEncodedText.Encode("prompt_tokens");
    private static readonly JsonEncodedText CompletionTokensName = JsonEncodedText.Encode("completion_tokens");
    private static readonly JsonEncodedText ExecutedOnName = JsonEncodedText.Encode("executed_on");
    private static readonly JsonEncodedText TimingsName = JsonEncodedText.Encode("timings_ms");
    private static readonly JsonEncodedText QueueName = JsonEncodedText.Encode("queue");
    private static readonly JsonEncodedText PrefillName = JsonEncodedText.Encode("prefill");
    private static readonly JsonEncodedText DecodeName = JsonEncodedText.Encode("decode");
    private static readonly JsonEncodedText TotalName = JsonEncodedText.Encode("total");
    private static readonly JsonEncodedText ErrorName = JsonEncodedText.Encode("error");
    private static readonly JsonEncodedText CodeName = JsonEncodedText.Encode("code");
    private static readonly JsonEncodedText MessageName = JsonEncodedText.Encode("message");

    private static readonly JsonEncodedText AcceptedType = JsonEncodedText.Encode("accepted");
    private static readonly JsonEncodedText TokenType = JsonEncodedText.Encode("token");
    private static readonly JsonEncodedText ResultType = JsonEncodedText.Encode("result");
    private static readonly JsonEncodedText ErrorType = JsonEncodedText.Encode("error");
    private static readonly JsonEncodedText QueuedStatus = JsonEncodedText.Encode(JobStatuses.Queued);
    private static readonly JsonEncodedText SucceededStatus = JsonEncodedText.Encode(JobStatuses.Succeeded);

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    /// <summary>
    /// <c>{"type":"accepted","id":..,"status":"QUEUED","route":"local|relay","node":..}</c>
    /// </summary>
    /// <param name="id">The job id.</param>
    /// <param name="route"><c>local</c> or <c>relay</c>: where the scheduler will run the job.</param>
    /// <param name="node">The node id.</param>
    /// <exception cref="ArgumentException"><paramref name="route"/> is neither <c>local</c> nor <c>relay</c>.</exception>
    public static byte[] Accepted(string id, string route, string node)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(node);
        RequireRoute(route, nameof(route));

        var writer = Rent(out var buffer);
        writer.WriteStartObject();
        writer.WriteString(TypeName, AcceptedType);
        writer.WriteString(IdName, id);
        writer.WriteString(StatusName, QueuedStatus);
        writer.WriteString(RouteName, route);
        writer.WriteString(NodeName, node);
        writer.WriteEndObject();
        return ToArray(writer, buffer);
    }

    /// <summary>
    /// <c>{"type":"token","id":..,"seq":n,"text":".."}</c> (only for <c>"stream": true</c> jobs).
    /// </summary>
    /// <param name="id">The job id.</param>
    /// <param name="seq">The 0-based index of the generated token within the job.</param>
    /// <param name="text">The decoded text of that token (may be empty while a character is incomplete).</param>
    public static byte[] Token(string id, int seq, string text)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfNegative(seq);

        var writer = Rent(out var buffer);
        writer.WriteStartObject();
        writer.WriteString(TypeName, TokenType);
        writer.WriteString(IdName, id);
        writer.WriteNumber(SeqName, seq);
        writer.WriteString(TextName, text);
        writer.WriteEndObject();
        return ToArray(writer, buffer);
    }

    /// <summary>
    /// <c>{"type":"result","id":..,"status":"SUCCEEDED","text":..,"finish_reason":..,
    /// "usage":{"prompt_tokens":..,"completion_tokens":..},"executed_on":..,"node":..,
    /// "timings_ms":{"queue":..,"prefill":..,"decode":..,"total":..}}</c>
    /// </summary>
    /// <param name="id">The job id.</param>
    /// <param name="text">The generated text (without the prompt).</param>
    /// <param name="finishReason"><c>length</c>, <c>stop</c> or <c>eos</c>.</param>
    /// <param name="promptTokens">GPT-2 tokens in the prompt.</param>
    /// <param name="completionTokens">Tokens generated.</param>
    /// <param name="executedOn"><c>local</c> or <c>relay</c>.</param>
    /// <param name="node">The node id.</param>
    /// <param name="queueMs">Acceptance to start of prefill, ms.</param>
    /// <param name="prefillMs">Prefill (prompt forward pass) duration, ms.</param>
    /// <param name="decodeMs">Decode (token-by-token generation) duration, ms.</param>
    /// <param name="totalMs">Acceptance to result, ms.</param>
    /// <exception cref="ArgumentException">An enumerated argument has another value.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A count or duration is negative or not finite.</exception>
    public static byte[] Result(string id, string text, string finishReason, int promptTokens, int completionTokens,
        string executedOn, string node, double queueMs, double prefillMs, double decodeMs, double totalMs)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(node);
        if (finishReason is not ("length" or "stop" or "eos"))
        {
            throw new ArgumentException($"finish_reason must be length, stop or eos, not '{finishReason}'.", nameof(finishReason));
        }

        RequireRoute(executedOn, nameof(executedOn));
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(completionTokens);

        var writer = Rent(out var buffer);
        writer.WriteStartObject();
        writer.WriteString(TypeName, ResultType);
        writer.WriteString(IdName, id);
        writer.WriteString(StatusName, SucceededStatus);
        writer.WriteString(TextName, text);
        writer.WriteString(FinishReasonName, finishReason);
        writer.WriteStartObject(UsageName);
        writer.WriteNumber(PromptTokensName, promptTokens);
        writer.WriteNumber(CompletionTokensName, completionTokens);
        writer.WriteEndObject();
        writer.WriteString(ExecutedOnName, executedOn);
        writer.WriteString(NodeName, node);
        writer.WriteStartObject(TimingsName);
        writer.WriteNumber(QueueName, Milliseconds(queueMs, nameof(queueMs)));
        writer.WriteNumber(PrefillName, Milliseconds(prefillMs, nameof(prefillMs)));
        writer.WriteNumber(DecodeName, Milliseconds(decodeMs, nameof(decodeMs)));
        writer.WriteNumber(TotalName, Milliseconds(totalMs, nameof(totalMs)));
        writer.WriteEndObject();
        writer.WriteEndObject();
        return ToArray(writer, buffer);
    }

    /// <summary>
    /// <c>{"type":"error","id":..,"status":"REJECTED|FAILED|TIMED_OUT|CANCELED","error":{"code":..,"message":..}}</c>
    /// </summary>
    /// <param name="id">The job id (node-assigned when the payload had no valid id).</param>
    /// <param name="status">One of <see cref="JobStatuses.Rejected"/>, <see cref="JobStatuses.Failed"/>,
    /// <see cref="JobStatuses.TimedOut"/>, <see cref="JobStatuses.Canceled"/>.</param>
    /// <param name="code">One of <see cref="JobErrorCodes"/>.</param>
    /// <param name="message">Names the field and the rule, or what failed.</param>
    /// <exception cref="ArgumentException"><paramref name="status"/> is not a failure status.</exception>
    public static byte[] Error(string id, string status, string code, string message)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(code);
        ArgumentNullException.ThrowIfNull(message);
        if (status is not (JobStatuses.Rejected or JobStatuses.Failed or JobStatuses.TimedOut or JobStatuses.Canceled))
        {
            throw new ArgumentException($"An error event's status must be REJECTED, FAILED, TIMED_OUT or CANCELED, not '{status}'.", nameof(status));
        }

        var writer = Rent(out var buffer);
        writer.WriteStartObject();
        writer.WriteString(TypeName, ErrorType);
        writer.WriteString(IdName, id);
        writer.WriteString(StatusName, status);
        writer.WriteStartObject(ErrorName);
        writer.WriteString(CodeName, code);
        writer.WriteString(MessageName, message);
        writer.WriteEndObject();
        writer.WriteEndObject();
        return ToArray(writer, buffer);
    }

    /// <summary>Builds the <c>error</c> event for a failed parse (status REJECTED, the parse result's id).</summary>
    /// <exception cref="ArgumentException"><paramref name="parse"/> has no error.</exception>
    public static byte[] Rejected(JobParseResult parse)
    {
        ArgumentNullException.ThrowIfNull(parse);
        var error = parse.Error ?? throw new ArgumentException("The parse result has no error.", nameof(parse));
        return Error(parse.Id, JobStatuses.Rejected, error.Code, error.Message);
    }

    private static void RequireRoute(string route, string parameterName)
    {
        if (route is not ("local" or "relay"))
        {
            throw new ArgumentException($"{parameterName} must be local or relay, not '{route}'.", parameterName);
        }
    }

    private static double Milliseconds(double value, string parameterName)
    {
        if (!double.IsFinite(value) || value < 0)
        {
            throw new ArgumentOutOfRangeException(parameterName, value, "A duration in ms must be finite and >= 0.");
        }

        return Math.Round(value, 1, MidpointRounding.AwayFromZero);
    }

    private static Utf8JsonWriter Rent(out ArrayBufferWriter<byte> buffer)
    {
        buffer = t_buffer ??= new ArrayBufferWriter<byte>(256);
        buffer.ResetWrittenCount();
        var writer = t_writer ??= new Utf8JsonWriter(buffer, WriterOptions);
        writer.Reset(buffer);
        return writer;
    }

    private static byte[] ToArray(Utf8JsonWriter writer, ArrayBufferWriter<byte> buffer)
    {
        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }
}
