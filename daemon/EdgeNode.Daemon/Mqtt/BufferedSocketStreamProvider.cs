using System.Buffers;
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
/// packets that arrived together from one <c>recv</c>. Writes: MQTTnet writes a PUBLISH as two writes (header, then
/// payload) and the ingest loop sends a batch's PUBACKs one by one: 3.1 <c>send</c> calls per job; see
/// <see cref="BufferedSocketStream"/> for how they are coalesced.
/// </summary>
/// <remarks>
/// The socket is what MQTTnet would open (TCP, <c>TCP_NODELAY</c> on, IPv4 or IPv6 as the host name resolves) except
/// that the kernel's send and receive buffers keep their auto-tuned sizes (MQTTnet fixes both at 8 KiB by default) and
/// that closing it is graceful (MQTTnet's default linger of 0 s resets the connection).
/// </remarks>
/// <param name="coalescePackets">True on a plain (not TLS) link: see <see cref="BufferedSocketStream"/>.</param>
/// <param name="connected">Called with each new stream (the link's current one, for <see cref="BufferedSocketStream.Cork"/>).</param>
internal sealed class BufferedSocketStreamProvider(bool coalescePackets = false, Action<BufferedSocketStream>? connected = null) : IMqttClientStreamProvider
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
            var stream = new BufferedSocketStream(socket, coalescePackets);
            connected?.Invoke(stream);
            return stream;
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
/// <c>recv</c> at a time. Writes leave at once, in one <c>send</c> per complete MQTT packet when
/// <c>coalescePackets</c> (a plain link: the bytes are MQTT packets, and a PUBLISH's header is held until its payload
/// follows, by the packet's own remaining length, MQTT 5 §2.1.4 / 3.1.1 §2.2.3), and in one <c>send</c> for
/// everything written between <see cref="Cork"/> and <see cref="UncorkAsync"/> (the ingest loop's PUBACKs of one
/// batch). Owns the socket. Errors surface as <see cref="NetworkStream"/>'s do: an <see cref="IOException"/> wrapping
/// the <see cref="SocketException"/>, and <see cref="ObjectDisposedException"/> after <see cref="Stream.Dispose()"/>.
/// One reader at a time (MQTTnet's receive loop), like any stream; writers are serialized here.
/// </summary>
/// <remarks>Never hold a write that something awaits an answer to while corked: a QoS 1 PUBLISH written inside a
/// cork gets its PUBACK only after <see cref="UncorkAsync"/>.</remarks>
internal sealed class BufferedSocketStream(Socket socket, bool coalescePackets = false) : Stream, IMqttClientStreamEndPoints
{
    /// <summary>Read buffer size (bytes).</summary>
    public const int ReadBufferBytes = 64 * 1024;

    private readonly byte[] _buffer = new byte[ReadBufferBytes];
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ArrayBufferWriter<byte> _held = new(4096);
    private bool _coalesce = coalescePackets;
    private int _complete; // bytes of _held that form whole packets
    private int _corks;
    private int _start;
    private int _end;
    private bool _disposed;

    /// <summary>Bytes written and not sent yet (a packet still incomplete, or a cork's content); for tests and diagnostics.</summary>
    public int HeldBytes
    {
        get
        {
            _writeLock.Wait();
            try
            {
                return _held.WrittenCount;
            }
            finally
            {
                _writeLock.Release();
            }
        }
    }

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
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (!_coalesce && _held.WrittenCount == 0 && Volatile.Read(ref _corks) == 0)
            {
                await SendAsync(buffer, cancellationToken);
                return;
            }

            _held.Write(buffer.Span);
            if (Volatile.Read(ref _corks) == 0 && (!_coalesce || AtPacketBoundary()))
            {
                await SendHeldAsync(cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Holds every write until <see cref="UncorkAsync"/> (corks nest).</summary>
    public void Cork() => Interlocked.Increment(ref _corks);

    /// <summary>Ends one <see cref="Cork"/>; the last sends what was held, in one <c>send</c> where the kernel takes it.</summary>
    /// <exception cref="IOException">The send failed (the connection is broken; MQTTnet's receive loop reports it too).</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed (the link was closed meanwhile).</exception>
    public async ValueTask UncorkAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Decrement(ref _corks) > 0)
        {
            return;
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_held.WrittenCount > 0 && Volatile.Read(ref _corks) == 0)
            {
                await SendHeldAsync(cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Whether the held bytes end with a whole MQTT packet: a fixed header (type byte, then the Remaining Length as a
    /// variable byte integer of 1-4 bytes) followed by that many bytes, repeated. A malformed length (a fifth length
    /// byte) turns coalescing off for this stream and sends what is held.
    /// </summary>
    private bool AtPacketBoundary()
    {
        var held = _held.WrittenSpan;
        while (_complete < held.Length)
        {
            var packet = held[_complete..];
            var length = 0;
            var lengthBytes = 0;
            while (true)
            {
                if (1 + lengthBytes >= packet.Length)
                {
                    return false; // the Remaining Length is not all here yet
                }

                var b = packet[1 + lengthBytes];
                length |= (b & 0x7F) << (7 * lengthBytes);
                lengthBytes++;
                if ((b & 0x80) == 0)
                {
                    break;
                }

                if (lengthBytes == 4)
                {
                    _coalesce = false;
                    return true;
                }
            }

            var total = 1 + lengthBytes + length;
            if (total > packet.Length)
            {
                return false;
            }

            _complete += total;
        }

        return true;
    }

    private async ValueTask SendHeldAsync(CancellationToken cancellationToken)
    {
        try
        {
            await SendAsync(_held.WrittenMemory, cancellationToken);
        }
        finally
        {
            _held.ResetWrittenCount(); // after a failure the connection is done for; nothing is resent on it
            _complete = 0;
        }
    }

    private async ValueTask SendAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken)
    {
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
