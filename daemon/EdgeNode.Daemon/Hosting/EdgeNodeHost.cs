using EdgeNode.Daemon.Execution;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Ingest;
using EdgeNode.Daemon.IoTHub;
using EdgeNode.Daemon.Mqtt;
using EdgeNode.Daemon.Options;
using EdgeNode.Daemon.Outbox;
using EdgeNode.Daemon.Queue;
using EdgeNode.Daemon.Systemd;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Hosting;

/// <summary>
/// Builds the daemon's host. Configuration sources, later ones winning (DESIGN.md §8):
/// <c>appsettings.json</c> beside the binary, <c>/etc/edgenode/edgenode.json</c> (or the file named by
/// <c>EDGENODE_CONFIG</c>, which must then exist; empty = none), environment variables <c>EDGENODE__Section__Key</c>, command-line
/// <c>--Section:Key=value</c>, then in-memory overrides (tests and the demo).
/// </summary>
internal static class EdgeNodeHost
{
    /// <summary>Default system configuration file.</summary>
    public const string SystemConfigFile = "/etc/edgenode/edgenode.json";

    public static HostApplicationBuilder CreateBuilder(IReadOnlyList<string> args, IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            ContentRootPath = AppContext.BaseDirectory,
            DisableDefaults = true,
        });
        var config = builder.Configuration;
        config.AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true, reloadOnChange: false);
        // EDGENODE_CONFIG unset: the system file if it exists; set to a path: that file, which must exist (a typo in the
        // path must not start the node on defaults); set but empty: no file.
        var named = Environment.GetEnvironmentVariable("EDGENODE_CONFIG");
        if (named is null)
        {
            config.AddJsonFile(SystemConfigFile, optional: true, reloadOnChange: false);
        }
        else if (named.Length > 0)
        {
            if (!File.Exists(named))
            {
                throw new InvalidOperationException($"the configuration file {named} named by EDGENODE_CONFIG does not exist");
            }

            config.AddJsonFile(named, optional: false, reloadOnChange: false);
        }

        config.AddEnvironmentVariables("EDGENODE__");
        config.AddCommandLine(args.ToArray());
        if (overrides is not null)
        {
            config.AddInMemoryCollection(overrides);
        }

        builder.Logging.AddConfiguration(config.GetSection("Logging"));
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Services.AddSystemdNotify();
        builder.AddEdgeNode();
        return builder;
    }

    /// <summary>
    /// How every options section is bound: a key the section's options class does not have (a typo such as
    /// <c>Queue:MaxJob</c>) is an error at start (exit 2 naming the key), not silently ignored
    /// (<see cref="BinderOptions.ErrorOnUnknownConfiguration"/>).
    /// </summary>
    internal static void StrictBinding(BinderOptions options) => options.ErrorOnUnknownConfiguration = true;

    /// <summary>Registers the node's features. Hosted services start in this order and stop in reverse.</summary>
    public static HostApplicationBuilder AddEdgeNode(this HostApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<NodeOptions>().BindConfiguration(NodeOptions.Section, StrictBinding).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<MqttOptions>().BindConfiguration(MqttOptions.Section, StrictBinding).ValidateDataAnnotations()
            .Validate(o => o.Embedded.Port is > 0 and < 65536, "Mqtt:Embedded:Port must be between 1 and 65535.")
            .Validate(o => o.UsesEmbeddedBroker || o.Port is > 0 and < 65536, "Mqtt:Port must be between 1 and 65535.")
            .Validate(o => !o.UsesEmbeddedBroker || o.Embedded.Enabled, "Mqtt:Host is empty and Mqtt:Embedded:Enabled is false: configure a broker.")
            .ValidateOnStart();
        services.AddOptions<InferenceOptions>().BindConfiguration(InferenceOptions.Section, StrictBinding).ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<InferenceOptions>>(new RuleValidator<InferenceOptions>(o =>
            string.IsNullOrWhiteSpace(o.ModelPath) || File.Exists(o.ModelPath) ? null : $"Inference:ModelPath names a file that does not exist: '{o.ModelPath}'."));
        services.AddOptions<QueueOptions>().BindConfiguration(QueueOptions.Section, StrictBinding).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<ExecutionOptions>().BindConfiguration(ExecutionOptions.Section, StrictBinding).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<AdminOptions>().BindConfiguration(AdminOptions.Section, StrictBinding).ValidateDataAnnotations()
            .Validate(o => string.IsNullOrWhiteSpace(o.Url) || Uri.TryCreate(o.Url, UriKind.Absolute, out _), "Admin:Url must be an absolute URL such as http://127.0.0.1:9600.")
            .ValidateOnStart();

        services.AddOptions<OffloadOptions>().BindConfiguration(OffloadOptions.Section, StrictBinding).ValidateDataAnnotations()
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<OffloadOptions>>(new RuleValidator<OffloadOptions>(o => o.Validate())); // names the key that breaks a rule

        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<NodeState>();
        services.AddSingleton<NodeSignals>();
        services.AddLoopHeartbeat();
        services.AddSingleton<NodeMetrics>();
        services.AddSingleton<AdminEndpoint>();
        services.AddSingleton<StoreHost>();
        services.AddSingleton<ModelHost>();
        services.AddSingleton<EmbeddedBroker>();
        services.AddSingleton<BrokerConnection>();

        // Start-up sequence (see daemon/README.md): admin endpoint, store, model, broker, loops.
        // Hosts stop in reverse: ingest stops first, the executor finishes its job, the outbox is
        // flushed while the broker link is still up, then the link, the model and the store close.
        services.AddHostedService(sp => sp.GetRequiredService<AdminEndpoint>());
        services.AddHostedService(sp => sp.GetRequiredService<StoreHost>());
        services.AddHostedService(sp => sp.GetRequiredService<ModelHost>());
        services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBroker>());
        services.AddHostedService(sp => sp.GetRequiredService<BrokerConnection>());
        services.AddSingleton<StatusPublisher>();
        services.AddHostedService(sp => sp.GetRequiredService<StatusPublisher>());
        services.AddSingleton<OutboxPublisher>();
        services.AddHostedService(sp => sp.GetRequiredService<OutboxPublisher>());
        services.AddHostedService<StoreMaintenance>();
        services.AddSingleton<Offload.OffloadRouter>();
        services.AddSingleton<Offload.OffloadWorker>();
        services.AddHostedService(sp => sp.GetRequiredService<Offload.OffloadWorker>());
        services.AddSingleton<Executor>();
        services.AddHostedService(sp => sp.GetRequiredService<Executor>());
        services.AddSingleton<JobControl>();
        services.AddHostedService<IngestService>();
        builder.AddIoTHub();
        return builder;
    }
}

/// <summary>Validates options with a rule method that returns null or a message naming the offending key.</summary>
internal sealed class RuleValidator<T>(Func<T, string?> rule) : IValidateOptions<T>
    where T : class
{
    public ValidateOptionsResult Validate(string? name, T options) =>
        rule(options) is { } message ? ValidateOptionsResult.Fail(message) : ValidateOptionsResult.Success;
}
