using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeNode.Daemon.Tests.Durability;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Tests.Offload;

/// <summary>
/// Issue 5: a crash (SIGKILL of the daemon subprocess) while jobs are OFFLOADED. The relay here is written in the
/// test (Kestrel on 127.0.0.1) so that it can hold requests open until the kill; the real relay's idempotency by id
/// is covered by the relay's own tests.
/// </summary>
[Collection("Daemon")]
public sealed class OffloadCrashTests
{
    private static readonly TimeSpan Timeout = NodeProcess.Timeout;

    [Fact]
    public async Task Sigkill_WhileJobsOffloaded_EachFinishesExactlyOnceAfterRestart()
    {
        const int count = 6;
        await using var relay = await HoldingRelay.StartAsync();
        using var state = new TempDirectory();
        await using var broker = await Mosquitto.StartAsync();
        const int delayMs = 50; // a local job takes >= 200 ms, so the burst overflows the one-job queue on any machine
        await using var node = new NodeProcess(state.Path, broker.Port, "offcrash",
            [.. OffloadTests.NodeConfig(relay.Port, maxJobs: 1, maxConcurrent: 16, decodeStepDelayMs: delayMs).Select(kv => $"--{kv.Key}={kv.Value}")])
        {
            DecodeStepDelayMs = delayMs, // turns the hooks on; NodeConfig's setting comes later on the command line
        };
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "offcrash");

        var ids = Enumerable.Range(0, count).Select(i => "off-" + i.ToString(CultureInfo.InvariantCulture)).ToList();
        await Task.WhenAll(ids.Select(id => device.PublishJobAsync(id, $$"""{"id":"{{id}}","prompt":"Hello, my name is","max_new_tokens":4}""")));

        // Every job either finished locally or is held open at the relay: then kill the node.
        await relay.WaitUntilAsync(r => !r.Received.IsEmpty && r.Received.Count + device.Finals.Count == count, Timeout);
        var offloaded = relay.Received.Keys.ToList();
        await node.Current.KillAsync(Timeout);
        using (var store = node.OpenStore())
        {
            Assert.All(offloaded, id => Assert.Equal(JobStatuses.Offloaded, store.Get(id)!.Status));
        }

        relay.Release();
        await node.StartReadyAsync();
        await device.WaitForFinalsAsync(ids, Timeout);
        await node.StopAsync();

        var finals = device.AssertOneFinalEach(ids);
        Assert.All(offloaded, id =>
        {
            Assert.Equal(relay.Answered[id], finals[id]); // the relay's outcome, byte-identical
            Assert.Equal(2, relay.ReceivedTotal[id]); // sent before the crash and re-sent once (same id) after it
        });
        Assert.All(finals.Values, f => Assert.Contains("\"status\":\"SUCCEEDED\"", Encoding.UTF8.GetString(f), StringComparison.Ordinal));
        var localRuns = node.CountFinishedLines(JobStatuses.Succeeded);
        Assert.All(offloaded, id => Assert.False(localRuns.ContainsKey(id), $"{id} ran locally as well"));
        Assert.All(ids.Except(offloaded), id => Assert.Equal(1, localRuns.GetValueOrDefault(id)));
        using (var store = node.OpenStore())
        {
            Assert.All(ids, id => Assert.Equal(finals[id], store.Get(id)!.FinalEvent));
            Assert.Equal(0, store.CountOffloaded());
        }
    }

    /// <summary>A relay that holds every request open until <see cref="Release"/>, then answers each with a result.</summary>
    private sealed class HoldingRelay : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private HoldingRelay(WebApplication app) => _app = app;

        public int Port { get; private set; }

        /// <summary>Ids received while holding.</summary>
        public ConcurrentDictionary<string, bool> Received { get; } = new();

        /// <summary>Requests per id over the test.</summary>
        public ConcurrentDictionary<string, int> ReceivedTotal { get; } = new();

        /// <summary>The result bytes answered per id.</summary>
        public ConcurrentDictionary<string, byte[]> Answered { get; } = new();

        public static async Task<HoldingRelay> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            var app = builder.Build();
            var relay = new HoldingRelay(app);
            app.MapPost("/v1/jobs", relay.HandleAsync);
            await app.StartAsync();
            relay.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
            return relay;
        }

        public void Release() => _released.TrySetResult();

        public async Task WaitUntilAsync(Func<HoldingRelay, bool> condition, TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            while (true)
            {
                var changed = Volatile.Read(ref _changed).Task;
                if (condition(this))
                {
                    return;
                }

                await changed.WaitAsync(TimeSpan.FromMilliseconds(200), cts.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                cts.Token.ThrowIfCancellationRequested();
            }
        }

        private async Task HandleAsync(HttpContext context)
        {
            using var doc = await JsonDocument.ParseAsync(context.Request.Body);
            var id = doc.RootElement.GetProperty("id").GetString()!;
            ReceivedTotal.AddOrUpdate(id, 1, (_, n) => n + 1);
            if (!_released.Task.IsCompleted)
            {
                Received[id] = true;
                Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                await _released.Task.WaitAsync(context.RequestAborted);
            }

            var result = Answered.GetOrAdd(id, i => JobEvents.Result(i, "from the relay", "length", 5, 4, "relay", "holding-relay", 1, 2, 3, 6));
            context.Response.ContentType = "application/json";
            await context.Response.Body.WriteAsync(result);
        }

        public async ValueTask DisposeAsync()
        {
            Release();
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
