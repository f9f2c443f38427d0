using System.Text;
using System.Text.Json;
using EdgeNode.Daemon.Client;

namespace EdgeNode.Daemon.Tests.EndToEnd;

/// <summary>Token events for <c>"stream": true</c> and the cancel topic (issue 3 items 3 and 4; ../shared/cases/generation.md 4).</summary>
[Collection("Daemon")]
public sealed class StreamingAndCancelTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(180);

    [Fact]
    public async Task StreamJob_TokenEventsInOrder_ConcatenateToTheResultText()
    {
        await using var daemon = await DaemonHarness.StartAsync();
        await using var client = await daemon.ConnectClientAsync();

        var events = await client.RunAsync(Utf8("""{"id":"s-1","prompt":"Hello, my name is","max_new_tokens":24,"temperature":0,"stream":true}"""), Timeout);

        Assert.Equal("accepted", events[0].Type);
        Assert.Equal("result", events[^1].Type);
        var tokens = events.Skip(1).SkipLast(1).ToList();
        Assert.NotEmpty(tokens);
        Assert.All(tokens, t => Assert.Equal("token", t.Type));
        var pieces = tokens.Select(t => JsonDocument.Parse(t.Json).RootElement).ToList();
        Assert.Equal(Enumerable.Range(0, pieces.Count), pieces.Select(p => p.GetProperty("seq").GetInt32()));
        var text = JsonDocument.Parse(events[^1].Json).RootElement.GetProperty("text").GetString()!;
        Assert.Equal(text, string.Concat(pieces.Select(p => p.GetProperty("text").GetString())));
        Assert.All(pieces, p => Assert.True(!p.GetProperty("text").GetString()!.Contains('\uFFFD', StringComparison.Ordinal) || text.Contains('\uFFFD', StringComparison.Ordinal)));
    }

    /// <summary>generation.md 4: cancel after the first token event => CANCELED, and the executor takes the next job at once.</summary>
    [Fact]
    public async Task CancelRunningJob_AfterFirstToken_CanceledAndNextJobRuns()
    {
        // 5 ms per decoded token (test hook), so the job is surely still running when the cancel arrives:
        // on an idle machine the tiny model decodes all 1,000 tokens faster than a cancel round trip.
        await using var daemon = await DaemonHarness.StartWithTestHooksAsync(extra: new Dictionary<string, string?> { ["Testing:DecodeStepDelayMs"] = "5" });
        await using var client = await daemon.ConnectClientAsync();

        var events = new List<JobEvent>();
        await foreach (var e in client.SubmitAsync(Utf8("""{"id":"c-run","prompt":"Count","max_new_tokens":1000,"temperature":0,"stream":true}"""), Timeout))
        {
            events.Add(e);
            if (e.Type == "token" && events.Count(x => x.Type == "token") == 1)
            {
                await client.CancelAsync("c-run");
            }
        }

        var final = JsonDocument.Parse(events[^1].Json).RootElement;
        Assert.Equal("CANCELED", final.GetProperty("status").GetString());
        Assert.Equal("canceled", final.GetProperty("error").GetProperty("code").GetString());
        Assert.True(events.Count(e => e.Type == "token") < 1000, "decoding must stop long before max_new_tokens");
        Assert.Equal("CANCELED", daemon.Store.Get("c-run")!.Status);

        var next = await client.RunAsync(Utf8("""{"id":"after-cancel","prompt":"Next","max_new_tokens":3}"""), Timeout);
        Assert.Equal("SUCCEEDED", next[^1].Status);
    }

    [Fact]
    public async Task CancelQueuedJob_EndsCanceledWithoutRunning()
    {
        await using var daemon = await DaemonHarness.StartWithTestHooksAsync(extra: new Dictionary<string, string?> { ["Testing:DecodeStepDelayMs"] = "5" });
        await using var client = await daemon.ConnectClientAsync();

        var longJob = new List<JobEvent>();
        var busyRunning = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var longRun = Task.Run(async () =>
        {
            await foreach (var e in client.SubmitAsync(Utf8("""{"id":"busy","prompt":"a","max_new_tokens":1000,"temperature":0,"stream":true}"""), Timeout))
            {
                longJob.Add(e);
                if (e.Type == "token")
                {
                    busyRunning.TrySetResult();
                }
            }
        });
        await busyRunning.Task.WaitAsync(Timeout); // the executor is busy, so the next job waits in the queue
        var queued = new List<JobEvent>();
        var queuedRun = Task.Run(async () =>
        {
            await foreach (var e in client.SubmitAsync(Utf8("""{"id":"waiting","prompt":"b","max_new_tokens":3}"""), Timeout))
            {
                queued.Add(e);
                if (e.Type == "accepted")
                {
                    await client.CancelAsync("waiting");
                }
            }
        });

        await queuedRun;
        await longRun;
        Assert.Equal(["accepted", "error"], queued.Select(e => e.Type));
        Assert.Equal("CANCELED", queued[^1].Status);
        Assert.Equal("SUCCEEDED", longJob[^1].Status);
        var record = daemon.Store.Get("waiting")!;
        Assert.Equal("CANCELED", record.Status);
        Assert.Equal(0, record.Attempts); // never taken by the executor
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
