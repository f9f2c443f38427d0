using System.Threading.Channels;

namespace EdgeNode.Daemon.Hosting;

/// <summary>
/// A coalescing wake-up signal between loops (e.g. "new outbox entries", "new queued job"):
/// any number of <see cref="Set"/> calls before a wait wake exactly one <see cref="WaitAsync"/>.
/// Backed by a one-slot <see cref="Channel{T}"/>.
/// </summary>
internal sealed class Signal
{
    private readonly Channel<bool> _channel = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    public void Set() => _channel.Writer.TryWrite(true);

    /// <summary>Waits until set, or until <paramref name="timeout"/> passes; returns true when set.</summary>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellationToken"/> is canceled.</exception>
    public async Task<bool> WaitAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        if (_channel.Reader.TryRead(out _))
        {
            return true;
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await _channel.Reader.ReadAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }
}

/// <summary>The wake-up signals between the node's loops.</summary>
internal sealed class NodeSignals
{
    /// <summary>Set when jobs were queued (wakes the executor).</summary>
    public Signal JobQueued { get; } = new();

    /// <summary>Set when outbox entries were added or the broker link came back (wakes the publisher).</summary>
    public Signal OutboxChanged { get; } = new();

    /// <summary>Set when the retained node status should go out now, not at the next interval (the link came up, the
    /// job store was quarantined while running).</summary>
    public Signal StatusChanged { get; } = new();
}
