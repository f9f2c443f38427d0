using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace EdgeNode.Shared.Jobs;

/// <summary>
/// Validates a job request payload (DESIGN.md §3) into a <see cref="JobRequest"/> or a <see cref="JobError"/>.
/// Bad input is a value, never an exception: every rule broken gives <see cref="JobErrorCodes.InvalidJson"/>,
/// <see cref="JobErrorCodes.InvalidRequest"/> or <see cref="JobErrorCodes.PayloadTooLarge"/> with a message
/// naming the field and the rule.
/// </summary>
/// <remarks>
/// Rules beyond the field list of DESIGN.md §3: a UTF-8 byte-order mark is skipped; unknown fields are
/// ignored (forward compatibility); a JSON <c>null</c> counts as an absent field; a known field given twice is
/// invalid; integers may be written as integral numbers (<c>32.0</c>, <c>3.2e1</c>) but not as strings; the
/// first rule broken in document order is reported (a missing prompt last). Nesting deeper than 64 levels is
/// <c>invalid_json</c> (System.Text.Json's <c>MaxDepth</c>; the reader is not recursive, so 10,000 nested
/// <c>[</c> cannot overflow the stack).
/// </remarks>
public static class JobParser
{
    private const int MaxDepth = 64;
    private const int PriorityLimit = 100;
    private const double TemperatureLimit = 100;
    private const double RepetitionPenaltyLimit = 10;
    private const int MaxEchoedNumberLength = 32;

    private static readonly JsonReaderOptions ReaderOptions = new()
    {
        MaxDepth = MaxDepth,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowTrailingCommas = false,
    };

    /// <summary>
    /// Parses and validates one request payload.
    /// </summary>
    /// <param name="utf8Payload">The MQTT payload: UTF-8 JSON, optionally with a UTF-8 BOM.</param>
    /// <param name="limits">Size and range limits (payload bytes, max_new_tokens, id and reply_to bytes, stop count).</param>
    /// <param name="newId">Makes a node-assigned id; called once when the payload has no valid <c>id</c>.</param>
    /// <returns>
    /// The validated job, or the first error; in both cases a usable <see cref="JobParseResult.Id"/> (the
    /// payload's id if that field is valid, else <paramref name="newId"/>()) and the payload's
    /// <c>reply_to</c> if that field is valid.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="limits"/> or <paramref name="newId"/> is null.</exception>
    public static JobParseResult Parse(ReadOnlySpan<byte> utf8Payload, JobLimits limits, Func<string> newId)
    {
        ArgumentNullException.ThrowIfNull(limits);
        ArgumentNullException.ThrowIfNull(newId);

        if (utf8Payload.Length > limits.MaxPayloadBytes)
        {
            return Failure(JobErrorCodes.PayloadTooLarge,
                string.Create(CultureInfo.InvariantCulture,
                    $"payload must be at most {limits.MaxPayloadBytes} bytes (got {utf8Payload.Length})"),
                newId(), replyTo: null);
        }

        var bomLength = utf8Payload.StartsWith("\uFEFF"u8) ? 3 : 0;
        var json = utf8Payload[bomLength..];

        if (!Utf8.IsValid(json))
        {
            var offset = bomLength + FirstInvalidUtf8Offset(json);
            return Failure(JobErrorCodes.InvalidJson,
                string.Create(CultureInfo.InvariantCulture,
                    $"payload must be UTF-8 JSON (invalid UTF-8 byte 0x{utf8Payload[offset]:X2} at offset {offset})"),
                newId(), replyTo: null);
        }

        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(json, ReaderOptions);
            document = JsonDocument.ParseValue(ref reader);
            try
            {
                // Anything but whitespace after the value throws here.
                reader.Read();
            }
            catch
            {
                document.Dispose();
                throw;
            }
        }
        catch (JsonException ex)
        {
            return Failure(JobErrorCodes.InvalidJson, "payload must be valid JSON: " + ex.Message, newId(), replyTo: null);
        }

        using (document)
        {
            return Validate(document.RootElement, limits, newId);
        }
    }

    private static JobParseResult Validate(JsonElement root, JobLimits limits, Func<string> newId)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            return Failure(JobErrorCodes.InvalidRequest,
                $"payload must be a JSON object (an object is required; got {Describe(root)})", newId(), replyTo: null);
        }

        string? error = null;
        Fields seen = Fields.None;

        string? id = null;
        string? replyTo = null;
        string? prompt = null;
        int maxNewTokens = 32;
        float temperature = 0.8f;
        int topK = 40;
        float topP = 0.95f;
        float repetitionPenalty = 1.0f;
        long? seed = null;
        IReadOnlyList<string> stop = [];
        bool stream = false;
        int? deadlineMs = null;
        int priority = 0;

        foreach (var property in root.EnumerateObject())
        {
            var field = Identify(property);
            if (field == Fields.None)
            {
                continue; // unknown fields are ignored for forward compatibility
            }

            var name = property.Name;
            if ((seen & field) != 0)
            {
                error ??= $"{name} appears more than once (each field may be given once)";
                continue;
            }

            seen |= field;
            var value = property.Value;
            if (value.ValueKind == JsonValueKind.Null)
            {
                continue; // null means absent
            }

            switch (field)
            {
                case Fields.Id:
                    var idError = CheckTopicLevel(value, name, limits.MaxIdBytes, out id);
                    error ??= idError;
                    break;
                case Fields.ReplyTo:
                    var replyToError = CheckTopicName(value, name, limits.MaxReplyToBytes, out replyTo);
                    error ??= replyToError;
                    break;
                case Fields.Prompt:
                    error ??= CheckPrompt(value, name, out prompt);
                    break;
                case Fields.MaxNewTokens:
                    error ??= CheckInt32(value, name, 1, limits.MaxNewTokensLimit,
                        string.Create(CultureInfo.InvariantCulture, $"an integer between 1 and {limits.MaxNewTokensLimit}"),
                        ref maxNewTokens);
                    break;
                case Fields.Temperature:
                    error ??= CheckSingle(value, name, static t => t is >= 0 and <= TemperatureLimit,
                        "a number between 0 and 100 (0 means greedy)", ref temperature);
                    break;
                case Fields.TopK:
                    error ??= CheckInt32(value, name, 0, int.MaxValue, "an integer between 0 and 2147483647 (0 disables top-k)", ref topK);
                    break;
                case Fields.TopP:
                    error ??= CheckSingle(value, name, static p => p is > 0 and <= 1,
                        "a number greater than 0 and at most 1", ref topP);
                    break;
                case Fields.RepetitionPenalty:
                    error ??= CheckSingle(value, name, static r => r is > 0 and <= RepetitionPenaltyLimit,
                        "a number greater than 0 and at most 10", ref repetitionPenalty);
                    break;
                case Fields.Seed:
                    if (TryGetInteger(value, long.MinValue, long.MaxValue, out var seedValue))
                    {
                        seed = seedValue;
                    }
                    else
                    {
                        error ??= $"seed must be an integer between {long.MinValue} and {long.MaxValue} (got {DescribeForNumber(value)})";
                    }

                    break;
                case Fields.Stop:
                    error ??= CheckStop(value, name, limits.MaxStopSequences, ref stop);
                    break;
                case Fields.Stream:
                    if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    {
                        stream = value.GetBoolean();
                    }
                    else
                    {
                        error ??= $"{name} must be a boolean (got {Describe(value)})";
                    }

                    break;
                case Fields.DeadlineMs:
                    var deadline = 0;
                    var deadlineError = CheckInt32(value, name, 1, int.MaxValue, "an integer between 1 and 2147483647 (milliseconds from acceptance)", ref deadline);
                    error ??= deadlineError;
                    if (deadlineError is null)
                    {
                        deadlineMs = deadline;
                    }

                    break;
                case Fields.Priority:
                    error ??= CheckInt32(value, name, -PriorityLimit, PriorityLimit,
                        "an integer between -100 and 100 (higher runs first)", ref priority);
                    break;
                default:
                    throw new InvalidOperationException($"Unhandled field {field}.");
            }
        }

        if (error is null && prompt is null)
        {
            error = "prompt is required (a non-empty string)";
        }

        var assigned = id is null;
        var jobId = id ?? newId();
        if (error is not null)
        {
            return Failure(JobErrorCodes.InvalidRequest, error, jobId, replyTo);
        }

        var job = new JobRequest
        {
            Id = jobId,
            IdAssigned = assigned,
            Prompt = prompt!,
            MaxNewTokens = maxNewTokens,
            Temperature = temperature,
            TopK = topK,
            TopP = topP,
            RepetitionPenalty = repetitionPenalty,
            Seed = seed,
            Stop = stop,
            Stream = stream,
            DeadlineMs = deadlineMs,
            Priority = priority,
            ReplyTo = replyTo,
        };
        return new JobParseResult(job, null, jobId, replyTo);
    }

    private static JobParseResult Failure(string code, string message, string id, string? replyTo) =>
        new(null, new JobError(code, message), id, replyTo);

    [Flags]
    private enum Fields
    {
        None = 0,
        Id = 1 << 0,
        Prompt = 1 << 1,
        MaxNewTokens = 1 << 2,
        Temperature = 1 << 3,
        TopK = 1 << 4,
        TopP = 1 << 5,
        RepetitionPenalty = 1 << 6,
        Seed = 1 << 7,
        Stop = 1 << 8,
        Stream = 1 << 9,
        DeadlineMs = 1 << 10,
        Priority = 1 << 11,
        ReplyTo = 1 << 12,
    }

    private static Fields Identify(JsonProperty property) =>
        property.NameEquals("prompt"u8) ? Fields.Prompt
        : property.NameEquals("id"u8) ? Fields.Id
        : property.NameEquals("max_new_tokens"u8) ? Fields.MaxNewTokens
        : property.NameEquals("temperature"u8) ? Fields.Temperature
        : property.NameEquals("top_k"u8) ? Fields.TopK
        : property.NameEquals("top_p"u8) ? Fields.TopP
        : property.NameEquals("repetition_penalty"u8) ? Fields.RepetitionPenalty
        : property.NameEquals("seed"u8) ? Fields.Seed
        : property.NameEquals("stop"u8) ? Fields.Stop
        : property.NameEquals("stream"u8) ? Fields.Stream
        : property.NameEquals("deadline_ms"u8) ? Fields.DeadlineMs
        : property.NameEquals("priority"u8) ? Fields.Priority
        : property.NameEquals("reply_to"u8) ? Fields.ReplyTo
        : Fields.None;

    private static string? CheckPrompt(JsonElement value, string name, out string? prompt) =>
        CheckNonEmptyString(value, name, $"{name} must not be empty", int.MaxValue, out prompt);

    /// <summary>id: a non-empty string usable as one MQTT topic level (it is placed in topic names).</summary>
    private static string? CheckTopicLevel(JsonElement value, string name, int maxBytes, out string? result)
    {
        var error = CheckNonEmptyString(value, name, $"{name} must not be empty", maxBytes, out result);
        if (error is null && result!.Any(c => c is '/' or '+' or '#' || char.IsControl(c)))
        {
            result = null;
            return $"{name} must not contain '/', '+', '#', NUL or control characters (it is used in topic names)";
        }

        return error;
    }

    /// <summary>reply_to: a non-empty MQTT topic name (no wildcards; MQTT 5 §4.7.3, §1.5.4 for NUL and controls).</summary>
    private static string? CheckTopicName(JsonElement value, string name, int maxBytes, out string? result)
    {
        var error = CheckNonEmptyString(value, name, $"{name} must be a non-empty topic name", maxBytes, out result);
        if (error is not null)
        {
            return error;
        }

        foreach (var c in result!)
        {
            if (c is '+' or '#')
            {
                result = null;
                return $"{name} must be a topic name without the wildcards '+' and '#'";
            }

            if (char.IsControl(c))
            {
                result = null;
                return $"{name} must not contain NUL or control characters";
            }
        }

        return null;
    }

    /// <summary>The rules every text field shares: a JSON string, valid Unicode, not empty, at most <paramref name="maxBytes"/> UTF-8 bytes.</summary>
    private static string? CheckNonEmptyString(JsonElement value, string name, string emptyMessage, int maxBytes, out string? result)
    {
        result = null;
        if (value.ValueKind != JsonValueKind.String)
        {
            return $"{name} must be a string (got {Describe(value)})";
        }

        if (!TryGetString(value, out var text))
        {
            return $"{name} must be valid Unicode text (it has an unpaired surrogate escape)";
        }

        if (text.Length == 0)
        {
            return emptyMessage;
        }

        if (maxBytes != int.MaxValue)
        {
            var bytes = Encoding.UTF8.GetByteCount(text);
            if (bytes > maxBytes)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{name} must be at most {maxBytes} UTF-8 bytes (got {bytes})");
            }
        }

        result = text;
        return null;
    }

    private static string? CheckStop(JsonElement value, string name, int maxCount, ref IReadOnlyList<string> stop)
    {
        var rule = string.Create(CultureInfo.InvariantCulture, $"a string or an array of at most {maxCount} non-empty strings");
        if (value.ValueKind == JsonValueKind.String)
        {
            if (!TryGetString(value, out var single) || single.Length == 0)
            {
                return $"{name} must be {rule} (got an empty or invalid string)";
            }

            stop = [single];
            return null;
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            return $"{name} must be {rule} (got {Describe(value)})";
        }

        var count = value.GetArrayLength();
        if (count > maxCount)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{name} must be {rule} (got {count} items)");
        }

        var items = new string[count];
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{name} must be {rule} (item {i} is {Describe(item)})");
            }

            if (!TryGetString(item, out var text) || text.Length == 0)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{name} must be {rule} (item {i} is empty or invalid)");
            }

            items[i++] = text;
        }

        stop = items;
        return null;
    }

    private static string? CheckInt32(JsonElement value, string name, int min, int max, string rule, ref int result)
    {
        if (TryGetInteger(value, min, max, out var integer))
        {
            result = (int)integer;
            return null;
        }

        return $"{name} must be {rule} (got {DescribeForNumber(value)})";
    }

    private static string? CheckSingle(JsonElement value, string name, Func<double, bool> inRange, string rule, ref float result)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var number) && double.IsFinite(number) && inRange(number))
        {
            result = (float)number;
            return null;
        }

        return $"{name} must be {rule} (got {DescribeForNumber(value)})";
    }

    /// <summary>
    /// An integer-valued JSON number within [min, max]. Integral non-integer spellings (1.0, 1e2) are accepted;
    /// the exact value is checked in <see cref="decimal"/>, so 1e400 and 1.5 are refused.
    /// </summary>
    private static bool TryGetInteger(JsonElement value, long min, long max, out long result)
    {
        result = 0;
        if (value.ValueKind != JsonValueKind.Number)
        {
            return false;
        }

        if (value.TryGetInt64(out var integer))
        {
            result = integer;
            return integer >= min && integer <= max;
        }

        if (value.TryGetDecimal(out var number) && decimal.Truncate(number) == number && number >= min && number <= max)
        {
            result = (long)number;
            return true;
        }

        return false;
    }

    private static bool TryGetString(JsonElement value, out string text)
    {
        try
        {
            text = value.GetString()!;
            return true;
        }
        catch (InvalidOperationException)
        {
            // An escaped unpaired surrogate (e.g. "\ud800") cannot become a .NET string.
            text = "";
            return false;
        }
    }

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => DescribeNumber(value.GetRawText()),
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.Null => "null",
        _ => "an unknown value",
    };

    private static string DescribeForNumber(JsonElement value) =>
        value.ValueKind == JsonValueKind.String ? "a string; a JSON number is required" : Describe(value);

    private static string DescribeNumber(string raw) =>
        raw.Length <= MaxEchoedNumberLength ? raw : string.Concat(raw.AsSpan(0, MaxEchoedNumberLength), "...");

    private static int FirstInvalidUtf8Offset(ReadOnlySpan<byte> bytes)
    {
        var offset = 0;
        while (offset < bytes.Length)
        {
            if (System.Buffers.OperationStatus.Done != Rune.DecodeFromUtf8(bytes[offset..], out _, out var consumed))
            {
                return offset;
            }

            offset += consumed;
        }

        return bytes.Length;
    }
}
