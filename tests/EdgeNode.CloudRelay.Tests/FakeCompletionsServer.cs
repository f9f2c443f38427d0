using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace EdgeNode.CloudRelay.Tests;

/// <summary>
/// A small OpenAI-compatible completions server (Kestrel on 127.0.0.1, ephemeral port) for the relay's upstream
/// mode: <c>POST /v1/completions</c> is answered by <see cref="Handler"/>; every request body is recorded.
/// </summary>
internal sealed class FakeCompletionsServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _calls;

    private FakeCompletionsServer(WebApplication app) => _app = app;

    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Answers one completions request; default: <see cref="AnswerAsync"/> with " world".</summary>
    public Func<HttpContext, JsonElement, Task> Handler { get; set; } = (context, _) => AnswerAsync(context, " world", "length", 3, 2);

    public int Calls => Volatile.Read(ref _calls);

    public List<JsonElement> Requests { get; } = [];

    public List<string?> Authorizations { get; } = [];

    public static async Task<FakeCompletionsServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var server = new FakeCompletionsServer(app);
        app.MapPost("/v1/completions", async (HttpContext context) =>
        {
            var body = await JsonDocument.ParseAsync(context.Request.Body);
            lock (server.Requests)
            {
                server.Requests.Add(body.RootElement.Clone());
                server.Authorizations.Add(context.Request.Headers.Authorization.ToString() is { Length: > 0 } a ? a : null);
            }

            Interlocked.Increment(ref server._calls);
            await server.Handler(context, body.RootElement);
        });
        await app.StartAsync();
        server.BaseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        return server;
    }

    /// <summary>An OpenAI "text_completion" answer.</summary>
    public static Task AnswerAsync(HttpContext context, string text, string finishReason, int promptTokens, int completionTokens) =>
        context.Response.WriteAsJsonAsync(new Dictionary<string, object>
        {
            ["id"] = "cmpl-1",
            ["object"] = "text_completion",
            ["model"] = "gpt2",
            ["choices"] = new[] { new Dictionary<string, object?> { ["text"] = text, ["index"] = 0, ["finish_reason"] = finishReason } },
            ["usage"] = new Dictionary<string, int> { ["prompt_tokens"] = promptTokens, ["completion_tokens"] = completionTokens, ["total_tokens"] = promptTokens + completionTokens },
        });

    /// <summary>A streamed answer: one <c>data:</c> chunk per piece, the last with the finish reason, then <c>data: [DONE]</c>.</summary>
    public static async Task StreamAsync(HttpContext context, IReadOnlyList<string> pieces, string finishReason)
    {
        context.Response.ContentType = "text/event-stream";
        for (var i = 0; i < pieces.Count; i++)
        {
            var chunk = JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["id"] = "cmpl-1",
                ["object"] = "text_completion",
                ["choices"] = new[] { new Dictionary<string, object?> { ["text"] = pieces[i], ["index"] = 0, ["finish_reason"] = i == pieces.Count - 1 ? finishReason : null } },
            });
            await context.Response.WriteAsync("data: " + chunk + "\n\n");
            await context.Response.Body.FlushAsync();
        }

        await context.Response.WriteAsync("data: [DONE]\n\n");
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
