using System.Globalization;
using EdgeNode.Daemon.Client;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Queue;
using EdgeNode.TestSupport;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace EdgeNode.Daemon.Tests.EndToEnd;

/// <summary>
/// The real daemon host in the test process: real LiteDB files in a temp state directory, the real
/// synthesized tiny INT8 model, and either the embedded MQTTnet broker on an ephemeral loopback port
/// or an external broker (Mosquitto).
/// </summary>
internal sealed class DaemonHarness : IAsyncDisposable
{
    private readonly TempDirectory _state;

    private DaemonHarness(IHost host, TempDirectory state, int brokerPort)
    {
        Host = host;
        _state = state;
        BrokerPort = brokerPort;
    }

    public IHost Host { get; }

    public int BrokerPort { get; }

    public string StateDirectory => _state.Path;

    public JobStore Store => Host.Services.GetRequiredService<StoreHost>().Store;

    /// <summary>Starts a node and waits until it is ready (model loaded, broker connected).</summary>
    /// <param name="externalBrokerPort">Port of an external broker on 127.0.0.1; null for the embedded broker.</param>
    public static async Task<DaemonHarness> StartAsync(int? externalBrokerPort = null, IDictionary<string, string?>? extra = null, int protocolVersion = 5)
    {
        var state = new TempDirectory();
        var port = externalBrokerPort ?? Ports.FreeLoopbackPort();
        var config = new Dictionary<string, string?>
        {
            ["Node:Id"] = "test-node",
            ["Node:StateDirectory"] = state.Path,
            ["Inference:ModelPath"] = Models.TinyInt8,
            ["Admin:Url"] = "http://127.0.0.1:0",
            ["Mqtt:ProtocolVersion"] = protocolVersion.ToString(CultureInfo.InvariantCulture),
            ["Logging:LogLevel:Default"] = "Warning",
        };
        if (externalBrokerPort is null)
        {
            config["Mqtt:Host"] = "";
            config["Mqtt:Embedded:Port"] = port.ToString(CultureInfo.InvariantCulture);
        }
        else
        {
            config["Mqtt:Host"] = "127.0.0.1";
            config["Mqtt:Port"] = port.ToString(CultureInfo.InvariantCulture);
        }

        foreach (var (k, v) in extra ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }

        var host = EdgeNodeHost.CreateBuilder([], config).Build();
        await host.StartAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await host.Services.GetRequiredService<NodeState>().WhenReadyAsync(cts.Token);
        return new DaemonHarness(host, state, port);
    }

    public Task<JobClient> ConnectClientAsync() => JobClient.ConnectAsync("127.0.0.1", BrokerPort);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Host.StopAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            Host.Dispose();
            _state.Dispose();
        }
    }
}
