using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;

namespace EdgeNode.TestSupport;

/// <summary>
/// A child process whose stdout/stderr lines are captured and can be awaited (no sleeps:
/// <see cref="WaitForLineAsync"/> completes on the line itself). Killed (whole tree) on dispose.
/// </summary>
public sealed class ProcessRunner : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly Channel<string> _newLines = Channel.CreateUnbounded<string>();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ProcessRunner(Process process)
    {
        _process = process;
    }

    public int Id => _process.Id;

    /// <summary>Every line printed so far (stdout and stderr interleaved as received).</summary>
    public IReadOnlyCollection<string> Lines => _lines;

    public Task<int> Exited => _exited.Task;

    /// <summary>The process's standard input (redirected), e.g. for <c>mosquitto_pub -l</c>.</summary>
    public StreamWriter StandardInput => _process.StandardInput;

    public static ProcessRunner Start(string fileName, IEnumerable<string> arguments, IDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        if (environment is not null)
        {
            foreach (var (k, v) in environment)
            {
                info.Environment[k] = v;
            }
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var runner = new ProcessRunner(process);
        process.OutputDataReceived += (_, e) => runner.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => runner.OnLine(e.Data);
        process.Exited += (_, _) =>
        {
            // Exited can fire before the last output lines are read; WaitForExit() flushes them.
            process.WaitForExit();
            runner._newLines.Writer.TryComplete();
            runner._exited.TrySetResult(process.ExitCode);
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return runner;
    }

    /// <summary>Waits for a line (already printed or still to come) that satisfies <paramref name="match"/>.</summary>
    /// <exception cref="TimeoutException">With the output so far, when no such line came in time or the process ended.</exception>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout)
    {
        var seen = _lines.FirstOrDefault(match);
        if (seen is not null)
        {
            return seen;
        }

        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await foreach (var line in _newLines.Reader.ReadAllAsync(cts.Token))
            {
                if (match(line))
                {
                    return line;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        seen = _lines.FirstOrDefault(match);
        return seen ?? throw new TimeoutException($"no matching line within {timeout.TotalSeconds:F0} s; output so far:\n{string.Join('\n', _lines)}");
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            return await _exited.Task.WaitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"process did not exit within {timeout.TotalSeconds:F0} s; output:\n{string.Join('\n', _lines)}");
        }
    }

    /// <summary>Sends a POSIX signal (e.g. 15 for SIGTERM, 9 for SIGKILL) with kill(1).</summary>
    public void Signal(int signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    /// <summary>
    /// Sends SIGKILL to the process (not its children) at once, without spawning kill(1), so a crash lands within
    /// microseconds of the line the test reacted to; then waits for it to exit.
    /// </summary>
    /// <returns>The exit code reported for the killed process (137 on Linux).</returns>
    public async Task<int> KillAsync(TimeSpan timeout)
    {
        _process.Kill(entireProcessTree: false);
        return await WaitForExitAsync(timeout);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _lines.Enqueue(line);
        _newLines.Writer.TryWrite(line);
    }
}
