namespace EdgeNode.Daemon.Systemd;

/// <summary>
/// Liveness of the node's long-running loops (the executor and the ingest loop), for the systemd
/// watchdog (<see cref="SystemdNotifyService"/>). Each loop registers once and then reports, on its own
/// thread, either <see cref="LoopMonitor.Beat"/> (made progress: one iteration, one decoded token) or
/// <see cref="LoopMonitor.Idle"/> (about to wait for work, which is not a hang). A loop is stalled when
/// it has been busy, i.e. not idle, with no beat for longer than a given bound: a hung decode step or a
/// wedged commit. Lock-free: a beat is one volatile write of a monotonic timestamp.
/// </summary>
internal sealed class LoopHeartbeat(TimeProvider time)
{
    private readonly List<LoopMonitor> _loops = [];
    private readonly Lock _gate = new();

    /// <summary>Registers a loop under <paramref name="name"/> (e.g. "executor"); it starts idle.</summary>
    public LoopMonitor Register(string name)
    {
        var monitor = new LoopMonitor(name, time);
        lock (_gate)
        {
            _loops.Add(monitor);
        }

        return monitor;
    }

    /// <summary>
    /// The loops that are busy with no beat for longer than <paramref name="maxBusyWithoutBeat"/>, with how
    /// long; empty when every loop is alive (idle, stopped, or beat recently).
    /// </summary>
    public IReadOnlyList<(string Name, TimeSpan Since)> Stalled(TimeSpan maxBusyWithoutBeat)
    {
        List<(string, TimeSpan)>? stalled = null;
        lock (_gate)
        {
            foreach (var loop in _loops)
            {
                if (loop.BusyFor() is { } busy && busy > maxBusyWithoutBeat)
                {
                    (stalled ??= []).Add((loop.Name, busy));
                }
            }
        }

        return stalled ?? (IReadOnlyList<(string, TimeSpan)>)[];
    }
}

/// <summary>One loop's liveness handle (see <see cref="LoopHeartbeat"/>). Written by the loop's thread, read by the watchdog.</summary>
internal sealed class LoopMonitor
{
    // Timestamp (TimeProvider.GetTimestamp) of the last beat; IdleMark while waiting for work or stopped.
    private const long IdleMark = long.MinValue;
    private readonly TimeProvider _time;
    private long _lastBeat = IdleMark;

    internal LoopMonitor(string name, TimeProvider time)
    {
        Name = name;
        _time = time;
    }

    public string Name { get; }

    /// <summary>The loop made progress (and is busy from now on until the next beat or <see cref="Idle"/>).</summary>
    public void Beat() => Volatile.Write(ref _lastBeat, _time.GetTimestamp());

    /// <summary>The loop is about to wait for work (or has stopped): not stalled however long it waits.</summary>
    public void Idle() => Volatile.Write(ref _lastBeat, IdleMark);

    /// <summary>How long since the last beat while busy; null while idle.</summary>
    internal TimeSpan? BusyFor()
    {
        var last = Volatile.Read(ref _lastBeat);
        return last == IdleMark ? null : _time.GetElapsedTime(last);
    }
}
