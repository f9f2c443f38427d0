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
    private readonly TempDirectory? _ownedState;

    private DaemonHarness(IHost host, string stateDirectory, TempDirectory? ownedState, int brokerPort)
    {
        Host = host;
        StateDirectory = stateDirectory;
        _ownedState = ownedState;
        BrokerPort = brokerPort;
    }

    public IHost Host { get; }

    public int BrokerPort { get; }

    public string StateDirectory { get; }

    public JobStore Store => Host.Services.GetRequiredService<StoreHost>().Store;

    /// <summary>The admin endpoint's bound address (<c>http://127.0.0.1:{ephemeral}/</c>).</summary>
    public Uri AdminUrl => Host.Services.GetRequiredService<Health.AdminEndpoint>().BoundAddress!;

    /// <summary>Starts a node and waits until it is ready (model loaded, broker connected).</summary>
    /// <param name="externalBrokerPort">Port of an external broker on 127.0.0.1; null for the embedded broker.</param>
    /// <param name="stateDirectory">An existing state directory to reuse (kept on dispose); null for a fresh temporary one.</param>
    public static async Task<DaemonHarness> StartAsync(int? externalBrokerPort = null, IDictionary<string, string?>? extra = null, int protocolVersion = 5, string? stateDirectory = null)
    {
        var owned = stateDirectory is null ? new TempDirectory() : null;
        var statePath = stateDirectory ?? owned!.Path;
        var port = externalBrokerPort ?? Ports.FreeLoopbackPort();
        var config = new Dictionary<string, string?>
        {
            ["Node:Id"] = "test-node",
            ["Node:StateDirectory"] = statePath,
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
        return new DaemonHarness(host, statePath, owned, port);
    }

    /// <summary>
    /// Starts a node with the test-only hooks on (<c>EDGENODE_TEST_HOOKS=1</c>, e.g. <c>Testing:DecodeStepDelayMs</c>).
    /// The variable is set only while the host starts (the hooks are read then), so that daemons started as child
    /// processes by other tests never inherit it.
    /// </summary>
    public static async Task<DaemonHarness> StartWithTestHooksAsync(IDictionary<string, string?> extra, string? stateDirectory = null)
    {
        Environment.SetEnvironmentVariable("EDGENODE_TEST_HOOKS", "1");
        try
        {
            return await StartAsync(extra: extra, stateDirectory: stateDirectory);
        }
        finally
        {
            Environment.SetEnvironmentVariable("EDGENODE_TEST_HOOKS", null);
        }
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
            _ownedState?.Dispose();
        }
    }
}
