using System.Text.Json;
using EdgeNode.CloudRelay.Auth;
using EdgeNode.CloudRelay.Backends;
using EdgeNode.CloudRelay.Jobs;
using EdgeNode.CloudRelay.Metrics;
using EdgeNode.CloudRelay.Options;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;
using Prometheus;

namespace EdgeNode.CloudRelay.Hosting;

/// <summary>
/// Builds the relay's web application. Configuration, later sources winning: <c>appsettings.json</c> beside
/// the binary, <c>/etc/edgenode/relay.json</c> (or the file named by <c>EDGENODE_RELAY_CONFIG</c>), environment
/// variables <c>EDGENODE_RELAY__Section__Key</c>, command-line <c>--Section:Key=value</c>, then in-memory
/// overrides (tests). Bad configuration fails the start with the key named.
/// </summary>
internal static class RelayApp
{
    /// <summary>Default system configuration file.</summary>
    public const string SystemConfigFile = "/etc/edgenode/relay.json";

    /// <param name="args">Command-line configuration (<c>--Section:Key=value</c>).</param>
    /// <param name="overrides">In-memory configuration, winning over every other source (tests, demos).</param>
    /// <param name="configureServices">Last-word service registrations (tests: a FakeTimeProvider).</param>
    public static WebApplication Build(IReadOnlyList<string> args, IReadOnlyDictionary<string, string?>? overrides = null,
        Action<IServiceCollection>? configureServices = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ContentRootPath = AppContext.BaseDirectory,
        });
        var config = builder.Configuration;
        config.Sources.Clear();
        config.AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true, reloadOnChange: false);
        config.AddJsonFile(Environment.GetEnvironmentVariable("EDGENODE_RELAY_CONFIG") ?? SystemConfigFile, optional: true, reloadOnChange: false);
        config.AddEnvironmentVariables("EDGENODE_RELAY__");
        config.AddCommandLine(args.ToArray());
        if (overrides is not null)
        {
            config.AddInMemoryCollection(overrides);
        }

        builder.Logging.ClearProviders();
        builder.Logging.AddConfiguration(config.GetSection("Logging"));
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Services.AddSystemd();
        builder.AddRelay();
        configureServices?.Invoke(builder.Services);
        var url = config[$"{RelayOptions.Section}:Url"] ?? new RelayOptions().Url;
        builder.WebHost.UseUrls(url.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = (config.GetValue<int?>($"{RelayOptions.Section}:MaxBodyBytes") ?? new RelayOptions().MaxBodyBytes) + 1);

        var app = builder.Build();
        app.MapRelay();
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            var auth = app.Services.GetRequiredService<DeviceAuthenticator>();
            var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeNode.CloudRelay");
            Log.Listening(logger, string.Join(", ", addresses), app.Services.GetRequiredService<IRelayBackend>().Name, auth.DeviceCount);
            if (auth.DeviceCount == 0)
            {
                Log.NoDevices(logger);
            }
        });
        return app;
    }

    /// <summary>Registers the relay's services; the embedded backend loads its model as a hosted service before Kestrel starts.</summary>
    public static WebApplicationBuilder AddRelay(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<RelayOptions>().BindConfiguration(RelayOptions.Section, o => o.ErrorOnUnknownConfiguration = true).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IValidateOptions<RelayOptions>, RelayOptionsValidator>();
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<RelayMetrics>();
        services.AddSingleton<DeviceAuthenticator>();
        services.AddSingleton<DeviceQuota>();
        services.AddSingleton<RelayJobs>();
        if (string.Equals(builder.Configuration[$"{RelayOptions.Section}:Backend"], "Upstream", StringComparison.Ordinal))
        {
            services.AddSingleton<IRelayBackend, UpstreamBackend>();
        }
        else
        {
            services.AddSingleton<EmbeddedBackend>();
            services.AddSingleton<IRelayBackend>(sp => sp.GetRequiredService<EmbeddedBackend>());
            services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBackend>());
        }

        return builder;
    }

    /// <summary>Maps <c>POST /v1/jobs</c>, <c>/healthz</c>, <c>/readyz</c>, <c>/metrics</c>.</summary>
    public static WebApplication MapRelay(this WebApplication app)
    {
        app.MapPost("/v1/jobs", JobsEndpoint.HandleAsync);
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", (IRelayBackend backend) =>
        {
            var reason = backend.NotReadyReason;
            var body = JsonSerializer.Serialize(new Dictionary<string, object?>
            {
                ["ready"] = reason is null,
                ["backend"] = backend.Name,
                ["reason"] = reason,
            });
            return Results.Text(body, "application/json", statusCode: reason is null ? 200 : 503);
        });
        app.MapMetrics("/metrics", app.Services.GetRequiredService<RelayMetrics>().Registry);
        return app;
    }
}

/// <summary>Checks of <see cref="RelayOptions"/> beyond DataAnnotations, each failure naming its key.</summary>
internal sealed class RelayOptionsValidator : IValidateOptions<RelayOptions>
{
    public ValidateOptionsResult Validate(string? name, RelayOptions options)
    {
        var failures = options.Check().ToList();
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
