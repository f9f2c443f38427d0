using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Systemd;

/// <summary>
/// The service manager's end of the sd_notify protocol, as systemd holds it: a Unix datagram socket
/// bound to a path the test owns (pass <see cref="Path"/> as <c>NOTIFY_SOCKET</c>). Every datagram is
/// recorded as one message (its newline-separated assignments kept together) and can be awaited.
/// </summary>
internal sealed class NotifySocket : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly Channel<string> _messages = Channel.CreateUnbounded<string>();
    private readonly List<string> _all = [];
    private readonly Lock _gate = new();
    private readonly Task _receiver;

    public NotifySocket()
    {
        Path = _dir.Combine("notify.sock");
        _socket.Bind(new UnixDomainSocketEndPoint(Path));
        _receiver = Task.Run(ReceiveAsync);
    }

    public string Path { get; }

    /// <summary>Every message received so far, in order.</summary>
    public IReadOnlyList<string> Messages
    {
        get
        {
            lock (_gate)
            {
                return [.. _all];
            }
        }
    }

    /// <summary>Waits for the next message (after those already taken by earlier waits) that satisfies <paramref name="match"/>.</summary>
    /// <exception cref="TimeoutException">With every message so far, when none matched in time.</exception>
    public async Task<string> NextAsync(Func<string, bool> match, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var message = await _messages.Reader.ReadAsync(cts.Token);
                if (match(message))
                {
                    return message;
                }
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no matching notification within {timeout.TotalSeconds:F0} s; received:\n{string.Join("\n---\n", Messages)}");
        }
    }

    /// <summary>True when one of the message's newline-separated assignments is exactly <paramref name="assignment"/> (e.g. READY=1).</summary>
    public static bool Has(string message, string assignment) => message.Split('\n').Contains(assignment);

    public void Dispose()
    {
        _socket.Dispose();
        _messages.Writer.TryComplete();
        _ = _receiver.ContinueWith(static _ => { }, TaskScheduler.Default);
        _dir.Dispose();
    }

    private async Task ReceiveAsync()
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var n = await _socket.ReceiveAsync(buffer, SocketFlags.None);
                var message = Encoding.UTF8.GetString(buffer, 0, n);
                lock (_gate)
                {
                    _all.Add(message);
                }

                _messages.Writer.TryWrite(message);
            }
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
        {
            // Disposed by the test.
        }
    }
}
