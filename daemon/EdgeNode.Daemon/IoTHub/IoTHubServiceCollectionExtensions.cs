using EdgeNode.Daemon.Ingest;
using EdgeNode.Daemon.Options;
using EdgeNode.Daemon.Outbox;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>Registers the IoT Hub management plane (DESIGN.md §7), only when <c>IoTHub:ConnectionString</c> or a client certificate is configured.</summary>
internal static class IoTHubServiceCollectionExtensions
{
    public static HostApplicationBuilder AddIoTHub(this HostApplicationBuilder builder)
    {
        var section = builder.Configuration.GetSection(IoTHubOptions.Section);
        if (string.IsNullOrWhiteSpace(section["ConnectionString"]) && string.IsNullOrWhiteSpace(section["ClientCertificateFile"]))
        {
            return builder;
        }

        var live = new LiveConfiguration();
        ((IConfigurationBuilder)builder.Configuration).Add(live);
        var services = builder.Services;
        services.AddOptions<IoTHubOptions>().BindConfiguration(IoTHubOptions.Section, Hosting.EdgeNodeHost.StrictBinding).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(live);
        services.AddSingleton(sp => new DesiredProperties(
            sp.GetRequiredService<IOptions<NodeOptions>>().Value,
            sp.GetRequiredService<IOptions<QueueOptions>>().Value,
            sp.GetRequiredService<IOptions<IoTHubOptions>>().Value,
            live,
            sp.GetRequiredService<Execution.ModelHost>(),
            sp.GetRequiredService<Offload.OffloadRouter>()));
        services.AddSingleton<IoTHubLink>();
        services.AddSingleton<IInboundJobSource>(sp => sp.GetRequiredService<IoTHubLink>());
        services.AddSingleton<IOutboxRoute>(sp => sp.GetRequiredService<IoTHubLink>());
        services.AddHostedService(sp => sp.GetRequiredService<IoTHubLink>());
        services.AddSingleton<IoTHubAgent>();
        services.AddHostedService(sp => sp.GetRequiredService<IoTHubAgent>());
        return builder;
    }
}
