using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// A Mosquitto that can be stopped (SIGTERM: it saves its sessions and queued messages) and started again on the
/// same port and persistence directory, as a real broker restart.
/// </summary>
internal sealed class PersistentBroker : IAsyncDisposable
{
    private readonly TempDirectory _data = new();
    private readonly string _extraConfig;
    private Mosquitto? _current;

    public PersistentBroker(string extraConfig = "", int? port = null)
    {
        // Mosquitto started as root drops to the 'mosquitto' user: it must be able to write its database here.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(_data.Path, (UnixFileMode)0b111_111_111);
        }

        _extraConfig = extraConfig;
        Port = port ?? Ports.FreeLoopbackPort();
    }

    public int Port { get; }

    /// <summary>The running broker's process (null-forgiving: only while started).</summary>
    public Mosquitto Current => _current ?? throw new InvalidOperationException("broker not started");

    public async Task StartAsync()
    {
        _current = await Mosquitto.StartAsync($"persistence true\npersistence_location {_data.Path}/\nautosave_interval 0\n{_extraConfig}", Port);
    }

    /// <summary>SIGTERM and wait: Mosquitto writes its persistence file on the way out.</summary>
    public async Task StopAsync()
    {
        var broker = Current;
        _current = null;
        broker.Process.Signal(15);
        await broker.Process.WaitForExitAsync(TimeSpan.FromSeconds(30));
        await broker.DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (_current is not null)
        {
            await _current.DisposeAsync();
        }

        _data.Dispose();
    }
}
