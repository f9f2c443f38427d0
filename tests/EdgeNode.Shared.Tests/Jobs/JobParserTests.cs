using System.Text;
using EdgeNode.Shared.Jobs;

namespace EdgeNode.Shared.Tests.Jobs;

public sealed class JobParserTests
{
    private const string AssignedId = "node-assigned-1";
    private static readonly JobLimits Limits = new();

    private int _newIdCalls;

    private string NewId()
    {
        _newIdCalls++;
        return AssignedId;
    }

    private JobParseResult Parse(string json) => JobParser.Parse(Encoding.UTF8.GetBytes(json), Limits, NewId);

    private JobParseResult Parse(byte[] payload) => JobParser.Parse(payload, Limits, NewId);

    /// <summary>cases/bad-payloads.md rows 1-18 and 20 (row 19 needs the tokenizer and is the daemon's).</summary>
    public static TheoryData<int, byte[], string, string, string> BadPayloads()
    {
        static byte[] U(string s) => Encoding.UTF8.GetBytes(s);
        var longJob = U("{\"prompt\": \"" + new string('a', 70 * 1024) + "\"}");
        return new TheoryData<int, byte[], string, string, string>
        {
            { 1, U("not json"), JobErrorCodes.InvalidJson, "payload", "valid JSON" },
            { 2, U("{}"), JobErrorCodes.InvalidRequest, "prompt", "is required" },
            { 3, U("{\"prompt\": 42}"), JobErrorCodes.InvalidRequest, "prompt", "must be a string" },
            { 4, U("{\"prompt\": \"\"}"), JobErrorCodes.InvalidRequest, "prompt", "must not be empty" },
            { 5, U("[1, 2, 3]"), JobErrorCodes.InvalidRequest, "payload", "an object is required" },
            { 6, U("{\"prompt\": \"hi\", \"max_new_tokens\": 0}"), JobErrorCodes.InvalidRequest, "max_new_tokens", "an integer between 1 and 1024" },
            { 7, U("{\"prompt\": \"hi\", \"max_new_tokens\": -5}"), JobErrorCodes.InvalidRequest, "max_new_tokens", "an integer between 1 and 1024" },
            { 8, U("{\"prompt\": \"hi\", \"max_new_tokens\": \"32\"}"), JobErrorCodes.InvalidRequest, "max_new_tokens", "a JSON number is required" },
            { 9, U("{\"prompt\": \"hi\", \"temperature\": -1}"), JobErrorCodes.InvalidRequest, "temperature", "a number between 0 and 100" },
            { 10, U("{\"prompt\": \"hi\", \"top_p\": 1.5}"), JobErrorCodes.InvalidRequest, "top_p", "greater than 0 and at most 1" },
            { 11, U("{\"prompt\": \"hi\", \"top_k\": -3}"), JobErrorCodes.InvalidRequest, "top_k", "an integer between 0 and 2147483647" },
            { 12, U("{\"prompt\": \"hi\", \"deadline_ms\": 0}"), JobErrorCodes.InvalidRequest, "deadline_ms", "an integer between 1 and 2147483647" },
            { 13, U("{\"prompt\": \"hi\", \"id\": \"\"}"), JobErrorCodes.InvalidRequest, "id", "must not be empty" },
            { 14, U("{\"prompt\": \"hi\", \"id\": \"a/b+c#\"}"), JobErrorCodes.InvalidRequest, "id", "used in topic names" },
            { 15, [0xFF, 0xFE, 0x00, 0x41], JobErrorCodes.InvalidJson, "payload", "invalid UTF-8 byte 0xFF at offset 0" },
            { 16, longJob, JobErrorCodes.PayloadTooLarge, "payload", "at most 65536 bytes" },
            { 17, U(new string('[', 10_000)), JobErrorCodes.InvalidJson, "payload", "depth of 64" },
            { 18, U("{\"prompt\": \"hi\", \"seed\": 1e400}"), JobErrorCodes.InvalidRequest, "seed", "an integer between" },
            { 20, U("{\"prompt\": \"hi\", \"max_new_tokens\": 1000000000}"), JobErrorCodes.InvalidRequest, "max_new_tokens", "an integer between 1 and 1024" },
        };
    }

    [Theory]
    [MemberData(nameof(BadPayloads))]
    public void Parse_BadPayloadRow_ReturnsExpectedCodeAndMessageNamingFieldAndRule(int row, byte[] payload, string code, string field, string rule)
    {
        var result = Parse(payload);

        Assert.False(result.IsValid, $"row {row}");
        Assert.Null(result.Job);
        Assert.Equal(code, result.Error.Code);
        Assert.StartsWith(field + " ", result.Error.Message, StringComparison.Ordinal);
        Assert.Contains(rule, result.Error.Message, StringComparison.Ordinal);
        Assert.Equal(AssignedId, result.Id);
        Assert.Equal(1, _newIdCalls);
    }

    [Fact]
    public void Parse_PayloadOfExactlyTheLimit_IsParsed()
    {
        var prefix = "{\"prompt\": \"";
        var suffix = "\"}";
        var json = prefix + new string('a', Limits.MaxPayloadBytes - prefix.Length - suffix.Length) + suffix;

        var result = Parse(json);

        Assert.Equal(Limits.MaxPayloadBytes, Encoding.UTF8.GetByteCount(json));
        Assert.True(result.IsValid);
    }

    [Fact]
    public void Parse_PayloadOneByteOverTheLimit_IsPayloadTooLarge()
    {
        var result = JobParser.Parse(new byte[Limits.MaxPayloadBytes + 1], Limits, NewId);

        Assert.Equal(JobErrorCodes.PayloadTooLarge, result.Error!.Code);
        Assert.Contains("got 65537", result.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_OnlyPrompt_AppliesContractDefaultsAndAssignsId()
    {
        var result = Parse("{\"prompt\": \"Hello, my name is\"}");

        Assert.True(result.IsValid);
        var job = result.Job;
        Assert.Equal(AssignedId, job.Id);
        Assert.True(job.IdAssigned);
        Assert.Equal(AssignedId, result.Id);
        Assert.Equal("Hello, my name is", job.Prompt);
        Assert.Equal(32, job.MaxNewTokens);
        Assert.Equal(0.8f, job.Temperature);
        Assert.Equal(40, job.TopK);
        Assert.Equal(0.95f, job.TopP);
        Assert.Equal(1.0f, job.RepetitionPenalty);
        Assert.Null(job.Seed);
        Assert.Empty(job.Stop);
        Assert.False(job.Stream);
        Assert.Null(job.DeadlineMs);
        Assert.Equal(0, job.Priority);
        Assert.Null(job.ReplyTo);
        Assert.Null(result.ReplyTo);
    }

    [Fact]
    public void Parse_EveryField_MapsEachValue()
    {
        var result = Parse("""
            {"id": "sensor7-000123", "prompt": "Hello, my name is", "max_new_tokens": 64,
             "temperature": 0, "top_k": 0, "top_p": 1, "repetition_penalty": 1.3, "seed": 42,
             "stop": ["\n\n", "."], "stream": true, "deadline_ms": 5000, "priority": -7, "reply_to": "devices/7/replies"}
            """);

        Assert.True(result.IsValid);
        var job = result.Job;
        Assert.Equal("sensor7-000123", job.Id);
        Assert.False(job.IdAssigned);
        Assert.Equal(0, _newIdCalls);
        Assert.Equal(64, job.MaxNewTokens);
        Assert.Equal(0f, job.Temperature);
        Assert.Equal(0, job.TopK);
        Assert.Equal(1f, job.TopP);
        Assert.Equal(1.3f, job.RepetitionPenalty);
        Assert.Equal(42L, job.Seed);
        Assert.Equal(["\n\n", "."], job.Stop);
        Assert.True(job.Stream);
        Assert.Equal(5000, job.DeadlineMs);
        Assert.Equal(-7, job.Priority);
        Assert.Equal("devices/7/replies", job.ReplyTo);
        Assert.Equal("devices/7/replies", result.ReplyTo);
    }

    [Fact]
    public void Parse_Utf8ByteOrderMark_IsSkipped()
    {
        byte[] payload = [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("{\"prompt\": \"hi\"}")];

        var result = Parse(payload);

        Assert.True(result.IsValid);
        Assert.Equal("hi", result.Job.Prompt);
    }

    [Fact]
    public void Parse_UnknownFields_AreIgnored()
    {
        var result = Parse("{\"prompt\": \"hi\", \"model\": {\"name\": [1, 2, {\"x\": null}]}, \"Prompt\": 5, \"future\": true}");

        Assert.True(result.IsValid);
        Assert.Equal("hi", result.Job.Prompt);
    }

    [Fact]
    public void Parse_StopAsSingleString_BecomesOneStopSequence()
    {
        var result = Parse("{\"prompt\": \"hi\", \"stop\": \"\\n\"}");

        Assert.True(result.IsValid);
        Assert.Equal(["\n"], result.Job.Stop);
    }

    [Theory]
    [InlineData("\"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\"]", "stop", "at most 8 non-empty strings (got 9 items)")]
    [InlineData("\"stop\": [\"a\", \"\"]", "stop", "item 1 is empty")]
    [InlineData("\"stop\": [\"a\", 3]", "stop", "item 1 is 3")]
    [InlineData("\"stop\": \"\"", "stop", "a string or an array")]
    [InlineData("\"stop\": 5", "stop", "a string or an array")]
    [InlineData("\"stream\": \"yes\"", "stream", "must be a boolean (got a string)")]
    [InlineData("\"stream\": 1", "stream", "must be a boolean")]
    [InlineData("\"priority\": 101", "priority", "between -100 and 100")]
    [InlineData("\"priority\": -101", "priority", "between -100 and 100")]
    [InlineData("\"repetition_penalty\": 0", "repetition_penalty", "greater than 0 and at most 10")]
    [InlineData("\"repetition_penalty\": 10.5", "repetition_penalty", "greater than 0 and at most 10")]
    [InlineData("\"temperature\": 100.01", "temperature", "between 0 and 100")]
    [InlineData("\"temperature\": \"0.8\"", "temperature", "a JSON number is required")]
    [InlineData("\"top_p\": 0", "top_p", "greater than 0")]
    [InlineData("\"top_k\": 2.5", "top_k", "an integer between 0 and 2147483647 (0 disables top-k) (got 2.5)")]
    [InlineData("\"top_k\": 2147483648", "top_k", "(got 2147483648)")]
    [InlineData("\"seed\": 1.5", "seed", "an integer between -9223372036854775808 and 9223372036854775807")]
    [InlineData("\"seed\": 9223372036854775808", "seed", "an integer between")]
    [InlineData("\"seed\": \"42\"", "seed", "a JSON number is required")]
    [InlineData("\"deadline_ms\": -1", "deadline_ms", "an integer between 1 and 2147483647 (milliseconds from acceptance) (got -1)")]
    [InlineData("\"deadline_ms\": true", "deadline_ms", "(got true)")]
    [InlineData("\"max_new_tokens\": 1025", "max_new_tokens", "between 1 and 1024 (got 1025)")]
    [InlineData("\"max_new_tokens\": [32]", "max_new_tokens", "(got an array)")]
    [InlineData("\"id\": 123", "id", "must be a string (got 123)")]
    [InlineData("\"id\": \"a\\u0000b\"", "id", "NUL or control characters")]
    [InlineData("\"id\": \"tab\\there\"", "id", "NUL or control characters")]
    [InlineData("\"reply_to\": \"\"", "reply_to", "non-empty topic name")]
    [InlineData("\"reply_to\": \"replies/+\"", "reply_to", "without the wildcards")]
    [InlineData("\"reply_to\": \"replies/#\"", "reply_to", "without the wildcards")]
    [InlineData("\"reply_to\": \"a\\u0000b\"", "reply_to", "NUL or control characters")]
    [InlineData("\"reply_to\": {}", "reply_to", "must be a string (got an object)")]
    [InlineData("\"prompt\": \"\\ud800\"", "prompt", "unpaired surrogate")]
    [InlineData("\"max_new_tokens\": 8, \"max_new_tokens\": 9", "max_new_tokens", "appears more than once")]
    public void Parse_FieldBreakingItsRule_IsInvalidRequestNamingTheField(string fields, string field, string rule)
    {
        var json = fields.StartsWith("\"prompt\"", StringComparison.Ordinal)
            ? "{" + fields + "}"
            : "{\"prompt\": \"hi\", " + fields + "}";

        var result = Parse(json);

        Assert.Equal(JobErrorCodes.InvalidRequest, result.Error?.Code);
        Assert.StartsWith(field + " ", result.Error!.Message, StringComparison.Ordinal);
        Assert.Contains(rule, result.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"max_new_tokens\": 32.0")]
    [InlineData("\"max_new_tokens\": 3.2e1")]
    [InlineData("\"max_new_tokens\": 1024")]
    public void Parse_IntegralNumberForIntegerField_IsAccepted(string field)
    {
        var result = Parse("{\"prompt\": \"hi\", " + field + "}");

        Assert.True(result.IsValid, result.Error?.Message);
        Assert.Equal(field.Contains("1024", StringComparison.Ordinal) ? 1024 : 32, result.Job.MaxNewTokens);
    }

    [Theory]
    [InlineData("9223372036854775807", long.MaxValue)]
    [InlineData("-9223372036854775808", long.MinValue)]
    [InlineData("1e3", 1000L)]
    [InlineData("0", 0L)]
    public void Parse_SeedAtInt64Range_IsAccepted(string seed, long expected)
    {
        var result = Parse("{\"prompt\": \"hi\", \"seed\": " + seed + "}");

        Assert.True(result.IsValid, result.Error?.Message);
        Assert.Equal(expected, result.Job.Seed);
    }

    [Fact]
    public void Parse_NullOptionalFields_AreTreatedAsAbsent()
    {
        var result = Parse("{\"prompt\": \"hi\", \"id\": null, \"seed\": null, \"stop\": null, \"max_new_tokens\": null, \"reply_to\": null}");

        Assert.True(result.IsValid, result.Error?.Message);
        Assert.True(result.Job.IdAssigned);
        Assert.Null(result.Job.Seed);
        Assert.Equal(32, result.Job.MaxNewTokens);
    }

    [Fact]
    public void Parse_NullPrompt_IsPromptRequired()
    {
        var result = Parse("{\"prompt\": null}");

        Assert.Equal("prompt is required (a non-empty string)", result.Error?.Message);
    }

    [Fact]
    public void Parse_IdOf128Utf8Bytes_IsAcceptedAnd129IsNot()
    {
        var ok = new string('é', 64);           // 128 UTF-8 bytes
        var tooLong = ok + "x";                 // 129

        var accepted = Parse("{\"prompt\": \"hi\", \"id\": \"" + ok + "\"}");
        var refused = Parse("{\"prompt\": \"hi\", \"id\": \"" + tooLong + "\"}");

        Assert.Equal(ok, accepted.Job?.Id);
        Assert.Equal("id must be at most 128 UTF-8 bytes (got 129)", refused.Error?.Message);
        Assert.Equal(AssignedId, refused.Id);
    }

    [Fact]
    public void Parse_ReplyToOverLimit_IsRefused()
    {
        var result = Parse("{\"prompt\": \"hi\", \"reply_to\": \"" + new string('r', 1025) + "\"}");

        Assert.Equal("reply_to must be at most 1024 UTF-8 bytes (got 1025)", result.Error?.Message);
        Assert.Null(result.ReplyTo);
    }

    [Fact]
    public void Parse_ErrorInAnotherField_StillCarriesValidIdAndReplyTo()
    {
        var result = Parse("{\"id\": \"job-9\", \"prompt\": \"hi\", \"top_p\": 7, \"reply_to\": \"dev/9/out\"}");

        Assert.False(result.IsValid);
        Assert.Equal("job-9", result.Id);
        Assert.Equal("dev/9/out", result.ReplyTo);
        Assert.Equal(0, _newIdCalls);
    }

    [Fact]
    public void Parse_ErrorBeforeIdInDocumentOrder_StillCarriesId()
    {
        var result = Parse("{\"prompt\": 1, \"reply_to\": \"dev/9/out\", \"id\": \"job-10\"}");

        Assert.Equal("prompt must be a string (got 1)", result.Error?.Message);
        Assert.Equal("job-10", result.Id);
        Assert.Equal("dev/9/out", result.ReplyTo);
    }

    [Fact]
    public void Parse_InvalidIdAndValidReplyTo_AssignsIdAndKeepsReplyTo()
    {
        var result = Parse("{\"id\": \"a/b\", \"prompt\": \"hi\", \"reply_to\": \"dev/9/out\"}");

        Assert.Equal(AssignedId, result.Id);
        Assert.Equal("dev/9/out", result.ReplyTo);
        Assert.Equal(1, _newIdCalls);
    }

    [Fact]
    public void Parse_FirstBrokenRuleInDocumentOrder_IsReported()
    {
        var result = Parse("{\"prompt\": \"hi\", \"top_k\": -1, \"top_p\": 2}");

        Assert.StartsWith("top_k ", result.Error?.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("{\"prompt\": \"hi\"} {}")]
    [InlineData("{\"prompt\": \"hi\"} x")]
    [InlineData("{\"prompt\": \"hi\",}")]
    [InlineData("{\"prompt\": \"hi\" /* comment */}")]
    [InlineData("{\"prompt\": 'hi'}")]
    [InlineData("{\"prompt\": \"hi\"")]
    public void Parse_MalformedJson_IsInvalidJsonWithAssignedId(string json)
    {
        var result = Parse(json);

        Assert.Equal(JobErrorCodes.InvalidJson, result.Error?.Code);
        Assert.StartsWith("payload must be valid JSON", result.Error!.Message, StringComparison.Ordinal);
        Assert.Equal(AssignedId, result.Id);
        Assert.Null(result.ReplyTo);
    }

    [Fact]
    public void Parse_InvalidUtf8InsideAString_IsInvalidJsonWithOffset()
    {
        byte[] payload = [.. "{\"prompt\": \""u8, 0xC3, 0x28, .. "\"}"u8];

        var result = Parse(payload);

        Assert.Equal(JobErrorCodes.InvalidJson, result.Error?.Code);
        Assert.Equal("payload must be UTF-8 JSON (invalid UTF-8 byte 0xC3 at offset 12)", result.Error!.Message);
    }

    [Fact]
    public void Parse_TrailingWhitespace_IsAccepted()
    {
        Assert.True(Parse("{\"prompt\": \"hi\"}\r\n  \t").IsValid);
    }

    [Fact]
    public void Parse_SmallerLimits_AreApplied()
    {
        var limits = new JobLimits { MaxPayloadBytes = 40, MaxNewTokensLimit = 8 };

        var tooMany = JobParser.Parse("{\"prompt\": \"hi\", \"max_new_tokens\": 9}"u8, limits, NewId);
        var tooBig = JobParser.Parse(Encoding.UTF8.GetBytes("{\"prompt\": \"" + new string('x', 40) + "\"}"), limits, NewId);

        Assert.Equal("max_new_tokens must be an integer between 1 and 8 (got 9)", tooMany.Error?.Message);
        Assert.Equal(JobErrorCodes.PayloadTooLarge, tooBig.Error?.Code);
    }
}
