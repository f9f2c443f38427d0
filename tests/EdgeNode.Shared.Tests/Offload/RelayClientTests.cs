using System.Net;
using System.Text;
using EdgeNode.Shared.Jobs;
using EdgeNode.Shared.Offload;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace EdgeNode.Shared.Tests.Offload;

/// <summary>
/// <see cref="RelayClient"/> against a scripted relay (Kestrel on 127.0.0.1, an ephemeral port): outcomes,
/// Retry-After pauses, the circuit breaker, SSE. Time is a <see cref="FakeTimeProvider"/>, so pauses and break
/// durations pass only when the test advances it.
/// </summary>
public sealed class RelayClientTests : IAsyncLifetime
{
    private static readonly byte[] Key = Enumerable.Range(7, 32).Select(i => (byte)i).ToArray();
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private WebApplication _app = null!;
    private Uri _address = null!;
    private int _calls;
    private readonly List<SasValidation> _auth = [];

    private Func<HttpContext, Task> Handler { get; set; } = c => c.Response.WriteAsync("");

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _app = builder.Build();
        _app.MapPost("/v1/jobs", async (HttpContext context) =>
        {
            Interlocked.Increment(ref _calls);
            var ok = SharedAccessSignature.TryParse(context.Request.Headers.Authorization.ToString(), out var token);
            lock (_auth)
            {
                _auth.Add(ok ? SharedAccessSignature.Validate(token!, Key, "edgenode-relay/devices/gw-9", _time.GetUtcNow()) : SasValidation.BadSignature);
            }

            await Handler(context);
        });
        await _app.StartAsync();
        _address = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private RelayClient Client(HttpClient http) => new(http, new RelayClientOptions
    {
        RelayUrl = _address,
        DeviceId = "gw-9",
        DeviceKey = Key,
        BreakDuration = TimeSpan.FromSeconds(15),
        MinimumThroughput = 3,
    }, _time);

    private static byte[] Job(string id) => Encoding.UTF8.GetBytes($$"""{"id":"{{id}}","prompt":"x"}""");

    private static Task Result(HttpContext context, string id)
    {
        context.Response.ContentType = "application/json";
        return context.Response.Body.WriteAsync(JobEvents.Result(id, "text", "length", 1, 1, "relay", "relay", 0, 1, 2, 3)).AsTask();
    }

    [Fact]
    public async Task SubmitAsync_RelayAnswersTheResult_CompletedWithItsExactBytesAndASignedRequest()
    {
        Handler = c => Result(c, "j1");
        using var http = new HttpClient();
        var client = Client(http);

        var outcome = await client.SubmitAsync(Job("j1"), "j1");

        Assert.Equal(RelayOutcomeKind.Completed, outcome.Kind);
        Assert.Equal(JobEvents.Result("j1", "text", "length", 1, 1, "relay", "relay", 0, 1, 2, 3), outcome.Event);
        Assert.Equal("SUCCEEDED", outcome.Status);
        Assert.Equal(SasValidation.Valid, Assert.Single(_auth));
    }

    [Fact]
    public async Task SubmitAsync_RejectedByValidation_CompletedWithTheErrorEvent()
    {
        Handler = c =>
        {
            c.Response.StatusCode = 400;
            return c.Response.Body.WriteAsync(JobEvents.Error("j2", JobStatuses.Rejected, JobErrorCodes.PromptTooLong, "too long")).AsTask();
        };
        using var http = new HttpClient();

        var outcome = await Client(http).SubmitAsync(Job("j2"), "j2");

        Assert.Equal(RelayOutcomeKind.Completed, outcome.Kind);
        Assert.Equal("REJECTED", outcome.Status);
        Assert.Equal(400, outcome.HttpStatus);
    }

    [Fact]
    public async Task SubmitAsync_AnswerForAnotherJob_Failed()
    {
        Handler = c => Result(c, "someone-else");
        using var http = new HttpClient();

        var outcome = await Client(http).SubmitAsync(Job("j3"), "j3");

        Assert.Equal(RelayOutcomeKind.Failed, outcome.Kind);
    }

    [Fact]
    public async Task SubmitAsync_429WithRetryAfter5For30Seconds_PausesThenResumesByItself()
    {
        // operations case 2: the relay answers 429 with Retry-After: 5 for 30 s, then 200.
        var start = _time.GetUtcNow();
        Handler = c =>
        {
            if (_time.GetUtcNow() - start < TimeSpan.FromSeconds(30))
            {
                c.Response.StatusCode = 429;
                c.Response.Headers.RetryAfter = "5";
                return Task.CompletedTask;
            }

            return Result(c, "j4");
        };
        using var http = new HttpClient();
        var client = Client(http);

        RelayOutcome outcome;
        var throttled = 0;
        while ((outcome = await client.SubmitAsync(Job("j4"), "j4")).Kind != RelayOutcomeKind.Completed)
        {
            Assert.Equal(RelayOutcomeKind.Throttled, outcome.Kind);
            Assert.Equal(TimeSpan.FromSeconds(5), outcome.RetryAfter);
            Assert.False(client.IsAvailable);
            var paused = await client.SubmitAsync(Job("j4"), "j4");
            Assert.Equal(RelayOutcomeKind.Unavailable, paused.Kind); // not sent during the pause
            throttled++;
            Assert.True(throttled < 20, "offload never resumed");
            _time.Advance(TimeSpan.FromSeconds(5));
            Assert.True(client.IsAvailable);
        }

        Assert.Equal(6, throttled); // t = 0, 5, ..., 25 s
        Assert.Equal(7, _calls); // one request per Retry-After, never more often
        Assert.Equal(RelayCircuitState.Closed, client.CircuitState); // throttling is not a failure
    }

    [Fact]
    public async Task SubmitAsync_RelayFailing_CircuitOpensThenAProbeClosesIt()
    {
        var healthy = false;
        Handler = c =>
        {
            if (healthy)
            {
                return Result(c, "j5");
            }

            c.Response.StatusCode = 500;
            return Task.CompletedTask;
        };
        using var http = new HttpClient();
        var client = Client(http);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(RelayOutcomeKind.Failed, (await client.SubmitAsync(Job("j5"), "j5")).Kind);
        }

        Assert.Equal(RelayCircuitState.Open, client.CircuitState);
        Assert.False(client.IsAvailable);
        var blocked = await client.SubmitAsync(Job("j5"), "j5");
        Assert.Equal(RelayOutcomeKind.Unavailable, blocked.Kind);
        Assert.Equal(3, _calls);

        healthy = true;
        _time.Advance(TimeSpan.FromSeconds(15));
        var probe = await client.SubmitAsync(Job("j5"), "j5");

        Assert.Equal(RelayOutcomeKind.Completed, probe.Kind);
        Assert.Equal(RelayCircuitState.Closed, client.CircuitState);
        Assert.Equal(4, _calls);
    }

    [Fact]
    public async Task SubmitAsync_RelayDown_FailedWithoutThrowing()
    {
        var port = EdgeNode.TestSupport.Ports.FreeLoopbackPort();
        using var http = new HttpClient();
        var client = new RelayClient(http, new RelayClientOptions { RelayUrl = new Uri($"http://127.0.0.1:{port}"), DeviceId = "d", DeviceKey = Key }, _time);

        var outcome = await client.SubmitAsync(Job("j6"), "j6");

        Assert.Equal(RelayOutcomeKind.Failed, outcome.Kind);
    }

    [Fact]
    public async Task SubmitAsync_EventStream_ForwardsAcceptedAndTokensAndReturnsTheFinalEvent()
    {
        Handler = async c =>
        {
            c.Response.ContentType = "text/event-stream";
            foreach (var (type, json) in new[]
                     {
                         ("accepted", JobEvents.Accepted("j7", "relay", "relay")),
                         ("token", JobEvents.Token("j7", 0, "te")),
                         ("token", JobEvents.Token("j7", 1, "xt")),
                         ("result", JobEvents.Result("j7", "text", "length", 1, 2, "relay", "relay", 0, 1, 2, 3)),
                     })
            {
                await c.Response.WriteAsync($"event: {type}\ndata: {Encoding.UTF8.GetString(json)}\n\n");
                await c.Response.Body.FlushAsync();
            }
        };
        using var http = new HttpClient();
        var seen = new List<string>();

        var outcome = await Client(http).SubmitAsync(Job("j7"), "j7", e => seen.Add(Encoding.UTF8.GetString(e)));

        Assert.Equal(RelayOutcomeKind.Completed, outcome.Kind);
        Assert.Equal(JobEvents.Result("j7", "text", "length", 1, 2, "relay", "relay", 0, 1, 2, 3), outcome.Event);
        Assert.Equal(3, seen.Count);
        Assert.Contains("\"type\":\"accepted\"", seen[0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task SubmitAsync_EventStreamEndsWithoutFinalEvent_Failed()
    {
        Handler = async c =>
        {
            c.Response.ContentType = "text/event-stream";
            await c.Response.WriteAsync($"event: accepted\ndata: {Encoding.UTF8.GetString(JobEvents.Accepted("j8", "relay", "relay"))}\n\n");
        };
        using var http = new HttpClient();

        var outcome = await Client(http).SubmitAsync(Job("j8"), "j8", _ => { });

        Assert.Equal(RelayOutcomeKind.Failed, outcome.Kind);
    }

    [Fact]
    public async Task SubmitAsync_401_FailedAndCountsTowardsTheBreaker()
    {
        Handler = c =>
        {
            c.Response.StatusCode = (int)HttpStatusCode.Unauthorized;
            return Task.CompletedTask;
        };
        using var http = new HttpClient();
        var client = Client(http);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(RelayOutcomeKind.Failed, (await client.SubmitAsync(Job("j9"), "j9")).Kind);
        }

        Assert.Equal(RelayCircuitState.Open, client.CircuitState);
    }
}
