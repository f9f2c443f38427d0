using System.Text.Json;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Health;

/// <summary>
/// The local admin endpoint (Kestrel, <c>Admin:Url</c>, default <c>http://127.0.0.1:9600</c>):
/// <c>/healthz</c> (the process is alive), <c>/metrics</c> (Prometheus text format) and <c>/readyz</c> (200 once the store is open, the model
/// loaded and the broker connected; 503 with the reasons otherwise), as Kubernetes-style probes.
/// Started first so that readiness can be watched during start-up.
/// </summary>
internal sealed class AdminEndpoint(IOptions<AdminOptions> options, NodeState state, NodeMetrics metrics, ILogger<AdminEndpoint> logger) : IHostedService, IAsyncDisposable
{
    private WebApplication? _app;

    /// <summary>The bound address (useful when <c>Admin:Url</c> asks for port 0), or null when disabled.</summary>
    public Uri? BoundAddress { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var url = options.Value.Url;
        if (string.IsNullOrWhiteSpace(url))
        {
            return;
        }

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        _app = builder.Build();
        _app.MapGet("/healthz", () => Results.Text("ok\n"));
        _app.MapGet("/readyz", () =>
        {
            var model = state.Model;
            var body = new Dictionary<string, object?>
            {
                ["ready"] = state.IsReady,
                ["reasons"] = state.NotReadyReasons(),
                ["model"] = model?.Path,
                ["execution_provider"] = model?.ExecutionProvider,
                ["broker_connected"] = state.BrokerConnected,
                ["store_quarantined_to"] = state.StoreQuarantinedTo,
            };
            return Results.Text(JsonSerializer.Serialize(body), "application/json", statusCode: state.IsReady ? 200 : 503);
        });
        _app.MapGet("/metrics", async (HttpContext context) =>
        {
            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.WriteAsync(context.Response.Body, state, context.RequestAborted);
        });
        await _app.StartAsync(cancellationToken);
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
        BoundAddress = address is null ? null : new Uri(address);
        Log.AdminListening(logger, address ?? url);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is not null)
        {
            await _app.StopAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.DisposeAsync();
        }
    }
}

/// <summary>Log messages of the health feature (event ids 600-699).</summary>
internal static partial class Log
{
    [LoggerMessage(600, LogLevel.Information, "Admin endpoint listening on {Url} (/healthz, /readyz, /metrics)")]
    public static partial void AdminListening(ILogger logger, string url);
}
