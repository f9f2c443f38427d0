using System.Collections.Concurrent;
using System.Globalization;
using EdgeNode.Daemon.Hosting;
using EdgeNode.TestSupport;
using EdgeNode.TestSupport.IoTHub;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Tests.IoTHub;

/// <summary>
/// A real daemon host (embedded broker, real LiteDB, tiny INT8 model) linked to an <see cref="IoTHubEmulator"/> over
/// TLS, with every log line of the run captured (all levels) so tests can scan it for secrets.
/// </summary>
internal sealed class IoTHubNode : IAsyncDisposable
{
    private readonly TempDirectory _state;

    private IoTHubNode(IHost host, TempDirectory state, IoTHubEmulator hub, LogCapture logs)
    {
        Host = host;
        _state = state;
        Hub = hub;
        Logs = logs;
    }

    public IHost Host { get; }

    public IoTHubEmulator Hub { get; }

    public LogCapture Logs { get; }

    public T Service<T>() where T : notnull => Host.Services.GetRequiredService<T>();

    /// <param name="beforeStart">Arranges the emulator before the node connects.</param>
    /// <param name="extra">Configuration overrides.</param>
    /// <param name="testHooks">Enables the test hooks (e.g. <c>Testing:DecodeStepDelayMs</c>) for this host only.</param>
    /// <param name="emulator">How the emulator listens (WebSockets, X.509); default TLS on TCP with SAS.</param>
    /// <param name="configure">Configuration overrides that need the emulator (its port, files, connection strings).</param>
    public static async Task<IoTHubNode> StartAsync(Action<IoTHubEmulator>? beforeStart = null, IDictionary<string, string?>? extra = null, bool testHooks = false,
        IoTHubEmulatorOptions? emulator = null, Func<IoTHubEmulator, IDictionary<string, string?>>? configure = null)
    {
        var state = new TempDirectory();
        var hub = await IoTHubEmulator.StartAsync(state.Path, emulator);
        beforeStart?.Invoke(hub);
        var config = new Dictionary<string, string?>
        {
            ["Node:Id"] = "test-node",
            ["Node:StateDirectory"] = state.Path,
            ["Inference:ModelPath"] = Models.TinyInt8,
            ["Admin:Url"] = "http://127.0.0.1:0",
            ["Mqtt:Host"] = "",
            ["Mqtt:Embedded:Port"] = Ports.FreeLoopbackPort().ToString(CultureInfo.InvariantCulture),
            ["Logging:LogLevel:Default"] = "Trace",
            ["IoTHub:ConnectionString"] = hub.ConnectionString,
            ["IoTHub:Port"] = hub.Port.ToString(CultureInfo.InvariantCulture),
            ["IoTHub:CaFile"] = hub.CaFile,
            ["IoTHub:InitialBackoffMilliseconds"] = "100",
            ["IoTHub:MaxBackoffSeconds"] = "2",
        };
        foreach (var (k, v) in (extra ?? new Dictionary<string, string?>()).Concat(configure?.Invoke(hub) ?? new Dictionary<string, string?>()))
        {
            config[k] = v;
        }

        var builder = EdgeNodeHost.CreateBuilder([], config);
        var logs = new LogCapture();
        builder.Logging.AddProvider(logs);
        IHost host;
        if (testHooks)
        {
            // Read while the host is built and started; unset again so child daemons of other tests never inherit it.
            Environment.SetEnvironmentVariable("EDGENODE_TEST_HOOKS", "1");
        }

        try
        {
            host = builder.Build();
            await host.StartAsync();
        }
        finally
        {
            Environment.SetEnvironmentVariable("EDGENODE_TEST_HOOKS", null);
        }

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await host.Services.GetRequiredService<NodeState>().WhenReadyAsync(cts.Token);
        return new IoTHubNode(host, state, hub, logs);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Host.StopAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            Host.Dispose();
            await Hub.DisposeAsync();
            _state.Dispose();
        }
    }
}

/// <summary>Captures every log message (formatted, with exception text) of a host.</summary>
internal sealed class LogCapture : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyList<string> Lines => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var structured = state is IEnumerable<KeyValuePair<string, object?>> kvs ? string.Join(" ", kvs.Select(kv => kv.Key + "=" + kv.Value)) : "";
            lines.Enqueue(logLevel + " " + category + " " + formatter(state, exception) + " " + structured + " " + exception);
        }
    }
}
