using System.Net;
using System.Net.Sockets;
using MQTTnet.Channel;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>
/// Opens the broker link's TCP connection for MQTTnet through its documented extension point
/// (<c>MqttClientOptionsBuilder.WithStreamProvider</c>, <see cref="IMqttClientStreamProvider"/>; MQTTnet still layers
/// TLS on top) and returns a <see cref="BufferedSocketStream"/>. MQTTnet 5 reads every packet with separate reads for
/// the two fixed-header bytes, each further remaining-length byte and the body, each a <c>recv</c> system call on a
/// plain socket stream: 5.3 per accepted job at 5,000 jobs/s (a job PUBLISH in, the PUBACK of its accepted event in),
/// measured with <c>perf stat</c> (docs/BENCHMARKS.md "Ingest", session 5). Reading into a 64 KiB buffer serves the
/// packets that arrived together from one <c>recv</c>.
/// </summary>
/// <remarks>
/// The socket is what MQTTnet would open (TCP, <c>TCP_NODELAY</c> on, IPv4 or IPv6 as the host name resolves) except
/// that the kernel's send and receive buffers keep their auto-tuned sizes (MQTTnet fixes both at 8 KiB by default).
/// </remarks>
internal sealed class BufferedSocketStreamProvider : IMqttClientStreamProvider
{
    /// <summary>Connects to <paramref name="brokerEndPoint"/> (a <see cref="DnsEndPoint"/> is resolved and each address tried).</summary>
    /// <exception cref="SocketException">The connection failed (refused, unreachable, name not resolved).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (MQTTnet's connect timeout).</exception>
    public async Task<Stream> ConnectAsync(EndPoint brokerEndPoint, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(brokerEndPoint);
        var socket = brokerEndPoint is IPEndPoint ip
            ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(SocketType.Stream, ProtocolType.Tcp); // dual mode where IPv6 exists: either family of a host name
        try
        {
            socket.NoDelay = true;
            await socket.ConnectAsync(brokerEndPoint, cancellationToken);
            return new BufferedSocketStream(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}

/// <summary>
/// A connected TCP socket as a <see cref="Stream"/> whose reads are served from a 64 KiB buffer filled by one
/// <c>recv</c> at a time; writes go to the socket at once, unbuffered (so an MQTT packet leaves when MQTTnet writes it).
/// Owns the socket. Errors surface as <see cref="NetworkStream"/>'s do: an <see cref="IOException"/> wrapping the
/// <see cref="SocketException"/>, and <see cref="ObjectDisposedException"/> after <see cref="Stream.Dispose()"/>.
/// One reader at a time (MQTTnet's receive loop), like any stream.
/// </summary>
internal sealed class BufferedSocketStream(Socket socket) : Stream, IMqttClientStreamEndPoints
{
    /// <summary>Read buffer size (bytes).</summary>
    public const int ReadBufferBytes = 64 * 1024;

    private readonly byte[] _buffer = new byte[ReadBufferBytes];
    private int _start;
    private int _end;
    private bool _disposed;

    public EndPoint? LocalEndPoint => _disposed ? null : socket.LocalEndPoint;

    public EndPoint? RemoteEndPoint => _disposed ? null : socket.RemoteEndPoint;

    public override bool CanRead => !_disposed;

    public override bool CanWrite => !_disposed;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (buffer.IsEmpty)
        {
            return 0;
        }

        if (_start == _end)
        {
            int received;
            try
            {
                received = await socket.ReceiveAsync(_buffer, SocketFlags.None, cancellationToken);
            }
            catch (SocketException ex)
            {
                throw new IOException("Unable to read data from the transport connection: " + ex.Message, ex);
            }

            if (received == 0)
            {
                return 0; // the peer closed the connection
            }

            (_start, _end) = (0, received);
        }

        var count = Math.Min(buffer.Length, _end - _start);
        _buffer.AsSpan(_start, count).CopyTo(buffer.Span);
        _start += count;
        return count;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            while (!buffer.IsEmpty)
            {
                var sent = await socket.SendAsync(buffer, SocketFlags.None, cancellationToken);
                buffer = buffer[sent..];
            }
        }
        catch (SocketException ex)
        {
            throw new IOException("Unable to write data to the transport connection: " + ex.Message, ex);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            _disposed = true;
            socket.Dispose(); // fails a pending receive, which ends MQTTnet's receive loop
        }

        base.Dispose(disposing);
    }
}
