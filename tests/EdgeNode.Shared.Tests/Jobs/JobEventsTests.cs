using System.Text;
using System.Text.Json;
using EdgeNode.Shared.Jobs;

namespace EdgeNode.Shared.Tests.Jobs;

public sealed class JobEventsTests
{
    private static string[] PropertyNames(JsonElement element) =>
        [.. element.EnumerateObject().Select(p => p.Name)];

    [Fact]
    public void Accepted_Fields_AreTheContractShapeInOrder()
    {
        var bytes = JobEvents.Accepted("sensor7-000123", "local", "node-a");

        Assert.Equal("""{"type":"accepted","id":"sensor7-000123","status":"QUEUED","route":"local","node":"node-a"}""",
            Encoding.UTF8.GetString(bytes));
    }

    [Fact]
    public void Token_Fields_AreTheContractShapeInOrder()
    {
        using var doc = JsonDocument.Parse(JobEvents.Token("j1", 3, " world\n\"quoted\""));
        var root = doc.RootElement;

        Assert.Equal(["type", "id", "seq", "text"], PropertyNames(root));
        Assert.Equal("token", root.GetProperty("type").GetString());
        Assert.Equal("j1", root.GetProperty("id").GetString());
        Assert.Equal(3, root.GetProperty("seq").GetInt32());
        Assert.Equal(" world\n\"quoted\"", root.GetProperty("text").GetString());
    }

    [Fact]
    public void Result_Fields_IncludeNestedUsageAndTimingsInOrder()
    {
        var bytes = JobEvents.Result("j2", "Alice.", "stop", promptTokens: 5, completionTokens: 2, executedOn: "relay",
            node: "node-b", queueMs: 1.04, prefillMs: 12.345, decodeMs: 0.05, totalMs: 100);

        using var doc = JsonDocument.Parse(bytes);
        var root = doc.RootElement;
        Assert.Equal(["type", "id", "status", "text", "finish_reason", "usage", "executed_on", "node", "timings_ms"], PropertyNames(root));
        Assert.Equal("result", root.GetProperty("type").GetString());
        Assert.Equal("j2", root.GetProperty("id").GetString());
        Assert.Equal("SUCCEEDED", root.GetProperty("status").GetString());
        Assert.Equal("Alice.", root.GetProperty("text").GetString());
        Assert.Equal("stop", root.GetProperty("finish_reason").GetString());
        var usage = root.GetProperty("usage");
        Assert.Equal(["prompt_tokens", "completion_tokens"], PropertyNames(usage));
        Assert.Equal(5, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(2, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal("relay", root.GetProperty("executed_on").GetString());
        Assert.Equal("node-b", root.GetProperty("node").GetString());
        var timings = root.GetProperty("timings_ms");
        Assert.Equal(["queue", "prefill", "decode", "total"], PropertyNames(timings));
        Assert.Equal("1", timings.GetProperty("queue").GetRawText());
        Assert.Equal("12.3", timings.GetProperty("prefill").GetRawText());
        Assert.Equal("0.1", timings.GetProperty("decode").GetRawText());
        Assert.Equal("100", timings.GetProperty("total").GetRawText());
    }

    [Fact]
    public void Error_Fields_IncludeNestedErrorObjectInOrder()
    {
        using var doc = JsonDocument.Parse(JobEvents.Error("j3", JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded, "deadline_ms 200 passed"));
        var root = doc.RootElement;

        Assert.Equal(["type", "id", "status", "error"], PropertyNames(root));
        Assert.Equal("error", root.GetProperty("type").GetString());
        Assert.Equal("TIMED_OUT", root.GetProperty("status").GetString());
        var error = root.GetProperty("error");
        Assert.Equal(["code", "message"], PropertyNames(error));
        Assert.Equal("deadline_exceeded", error.GetProperty("code").GetString());
        Assert.Equal("deadline_ms 200 passed", error.GetProperty("message").GetString());
    }

    [Fact]
    public void Rejected_ParseFailure_UsesParseIdAndRejectedStatus()
    {
        var parse = JobParser.Parse("{\"id\": \"j4\", \"prompt\": \"\"}"u8, new JobLimits(), () => "unused");

        using var doc = JsonDocument.Parse(JobEvents.Rejected(parse));

        Assert.Equal("j4", doc.RootElement.GetProperty("id").GetString());
        Assert.Equal("REJECTED", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal("invalid_request", doc.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("prompt must not be empty", doc.RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public void Result_SameInputs_GiveByteIdenticalOutput()
    {
        var first = JobEvents.Result("j5", "text ✓ ü 日本", "length", 3, 32, "local", "n", 1.25, 2.35, 3.45, 7.05);
        _ = JobEvents.Token("other", 0, "interleaved call on the same thread");
        var second = JobEvents.Result("j5", "text ✓ ü 日本", "length", 3, 32, "local", "n", 1.25, 2.35, 3.45, 7.05);

        Assert.Equal(first, second);
    }

    [Fact]
    public void Token_NonAsciiText_StaysUtf8AndRoundTrips()
    {
        var bytes = JobEvents.Token("j6", 0, "naïve 日本 <tag> & 'q'");

        var json = Encoding.UTF8.GetString(bytes);
        Assert.Contains("naïve 日本 <tag> & 'q'", json, StringComparison.Ordinal);
        using var doc = JsonDocument.Parse(bytes);
        Assert.Equal("naïve 日本 <tag> & 'q'", doc.RootElement.GetProperty("text").GetString());
    }

    [Fact]
    public void Token_UnpairedSurrogate_IsWrittenAsReplacementCharacter()
    {
        using var doc = JsonDocument.Parse(JobEvents.Token("j7", 1, "a\ud83d"));

        Assert.Equal("a\uFFFD", doc.RootElement.GetProperty("text").GetString());
    }

    [Fact]
    public void Token_ControlCharacters_AreEscaped()
    {
        var json = Encoding.UTF8.GetString(JobEvents.Token("j8", 0, "a\u0001b"));

        Assert.Contains("a\\u0001b", json, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("QUEUED")]
    [InlineData("SUCCEEDED")]
    [InlineData("OFFLOADED")]
    public void Error_NonFailureStatus_Throws(string status)
    {
        Assert.Throws<ArgumentException>(() => JobEvents.Error("j", status, JobErrorCodes.Internal, "m"));
    }

    [Fact]
    public void Accepted_UnknownRoute_Throws()
    {
        Assert.Throws<ArgumentException>(() => JobEvents.Accepted("j", "cloud", "n"));
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(-1.0)]
    public void Result_BadDuration_Throws(double ms)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            JobEvents.Result("j", "t", "eos", 1, 1, "local", "n", ms, 0, 0, 0));
    }

    [Theory]
    [InlineData("SUCCEEDED", true)]
    [InlineData("FAILED", true)]
    [InlineData("REJECTED", true)]
    [InlineData("TIMED_OUT", true)]
    [InlineData("CANCELED", true)]
    [InlineData("QUEUED", false)]
    [InlineData("IN_PROGRESS", false)]
    [InlineData("OFFLOADED", false)]
    public void IsFinal_Status_MatchesAwsIoTJobsTerminalStates(string status, bool expected)
    {
        Assert.Equal(expected, JobStatuses.IsFinal(status));
    }
}
