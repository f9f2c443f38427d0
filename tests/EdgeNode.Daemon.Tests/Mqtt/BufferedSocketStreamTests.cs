using System.Net;
using System.Net.Sockets;
using EdgeNode.Daemon.Mqtt;

namespace EdgeNode.Daemon.Tests.Mqtt;

/// <summary>
/// The broker link's socket stream (<see cref="BufferedSocketStreamProvider"/>) over real loopback TCP connections:
/// bytes arrive exactly and in order however the reader slices them, and the ways a connection ends surface as
/// <see cref="NetworkStream"/>'s do, which MQTTnet's channel relies on. The daemon's MQTT tests (plain, TLS, outages)
/// run over it too.
/// </summary>
public sealed class BufferedSocketStreamTests : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);

    public BufferedSocketStreamTests() => _listener.Start();

    private int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    [Fact]
    public async Task ReadAsync_PacketsThatArriveTogether_AreServedInOrderToSmallReadsFromOneReceive()
    {
        await using var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port));
        using var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        byte[] sent = [0x30, 0x05, 1, 2, 3, 4, 5, 0x40, 0x02, 0x00, 0x07]; // a PUBLISH and a PUBACK, as one segment
        await peer.SendAsync(sent);

        var received = new List<byte>();
        foreach (var slice in new[] { 2, 5, 1, 1, 2 }) // fixed header, body, then the next packet byte by byte
        {
            var part = new byte[slice];
            var read = 0;
            while (read < slice)
            {
                read += await stream.ReadAsync(part.AsMemory(read)).AsTask().WaitAsync(Timeout);
            }

            received.AddRange(part);
        }

        Assert.Equal(sent, received);
    }

    [Fact]
    public async Task ReadAsync_MoreThanTheBuffer_ArrivesIntact()
    {
        await using var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port));
        using var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        var sent = new byte[3 * BufferedSocketStream.ReadBufferBytes + 17];
        new Random(7).NextBytes(sent);
        var sending = peer.SendAsync(sent);

        var received = new byte[sent.Length];
        var total = 0;
        while (total < received.Length)
        {
            var read = await stream.ReadAsync(received.AsMemory(total, Math.Min(10_000, received.Length - total))).AsTask().WaitAsync(Timeout);
            Assert.True(read > 0, "the stream ended early");
            total += read;
        }

        await sending.WaitAsync(Timeout);
        Assert.Equal(sent, received);
    }

    [Fact]
    public async Task WriteAsync_EveryByteReachesThePeerInOrder()
    {
        await using var stream = await ConnectAsync(new DnsEndPoint("localhost", Port)); // a host name, as Mqtt:Host usually is
        using var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        var sent = Enumerable.Range(0, 1_000).SelectMany(i => new[] { (byte)0x40, (byte)0x02, (byte)(i >> 8), (byte)i }).ToArray();
        for (var i = 0; i < sent.Length; i += 4)
        {
            await stream.WriteAsync(sent.AsMemory(i, 4));
        }

        var received = new byte[sent.Length];
        var total = 0;
        while (total < received.Length)
        {
            total += await peer.ReceiveAsync(received.AsMemory(total)).AsTask().WaitAsync(Timeout);
        }

        Assert.Equal(sent, received);
    }

    [Fact]
    public async Task WriteAsync_Coalescing_HoldsAPacketUntilItsRemainingLengthIsWritten()
    {
        await using var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port), coalescePackets: true);
        using var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        var link = (BufferedSocketStream)stream;
        var payload = Enumerable.Range(0, 200).Select(i => (byte)i).ToArray();

        // A QoS 1 PUBLISH the way MQTTnet writes it: the fixed header (Remaining Length 205 = 0xCD 0x01), the topic and
        // packet id, then the payload; here the fixed header is split too.
        await stream.WriteAsync(new byte[] { 0x32 });
        Assert.Equal(1, link.HeldBytes);
        await stream.WriteAsync(new byte[] { 0xCD });
        Assert.Equal(2, link.HeldBytes); // the Remaining Length continues
        await stream.WriteAsync(new byte[] { 0x01, 0x00, 0x01, (byte)'t', 0x00, 0x07 });
        Assert.Equal(8, link.HeldBytes);
        await stream.WriteAsync(payload);
        Assert.Equal(0, link.HeldBytes); // 1 + 2 + 205 bytes: whole, sent

        await stream.WriteAsync(new byte[] { 0x40, 0x02, 0x00, 0x07 }); // a PUBACK in one write goes at once
        Assert.Equal(0, link.HeldBytes);

        byte[] expected = [0x32, 0xCD, 0x01, 0x00, 0x01, (byte)'t', 0x00, 0x07, .. payload, 0x40, 0x02, 0x00, 0x07];
        Assert.Equal(expected, await ReceiveAsync(peer, expected.Length));
    }

    [Fact]
    public async Task WriteAsync_MalformedRemainingLength_StopsCoalescingAndSends()
    {
        await using var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port), coalescePackets: true);
        using var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        byte[] garbage = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]; // a fifth length byte: not MQTT

        await stream.WriteAsync(garbage);
        await stream.WriteAsync(new byte[] { 0x30 }); // and from now on nothing is held

        Assert.Equal(0, ((BufferedSocketStream)stream).HeldBytes);
        Assert.Equal([.. garbage, 0x30], await ReceiveAsync(peer, garbage.Length + 1));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // a TLS link: the stream carries TLS records, only the cork applies
    public async Task Cork_HoldsEveryWriteUntilUncork_ThenSendsThemInOrder(bool coalescePackets)
    {
        await using var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port), coalescePackets);
        using var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        var link = (BufferedSocketStream)stream;
        var pubacks = Enumerable.Range(1, 3).SelectMany(i => new byte[] { 0x40, 0x02, 0x00, (byte)i }).ToArray();

        link.Cork();
        link.Cork(); // nested
        for (var i = 0; i < pubacks.Length; i += 4)
        {
            await stream.WriteAsync(pubacks.AsMemory(i, 4));
        }

        await link.UncorkAsync();
        Assert.Equal(12, link.HeldBytes); // still inside the outer cork
        await link.UncorkAsync();
        Assert.Equal(0, link.HeldBytes);

        Assert.Equal(pubacks, await ReceiveAsync(peer, pubacks.Length));
    }

    [Fact]
    public async Task ReadAsync_PeerClosed_ReturnsZero()
    {
        await using var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port));
        using (var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout))
        {
            await peer.SendAsync(new byte[] { 0xD0, 0x00 }); // PINGRESP, then a clean close
            peer.Shutdown(SocketShutdown.Both);
        }

        var buffer = new byte[16];
        Assert.Equal(2, await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout));
        Assert.Equal(0, await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout));
    }

    [Fact]
    public async Task Dispose_EndsAPendingRead_AndLaterCallsThrowObjectDisposed()
    {
        var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port));
        using var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout);
        var pending = stream.ReadAsync(new byte[16]).AsTask();

        await stream.DisposeAsync();

        // MQTTnet's channel maps either ending to a closed connection; what matters is that the read does not hang.
        var ended = await Record.ExceptionAsync(() => pending.WaitAsync(Timeout));
        Assert.True(ended is null or IOException or ObjectDisposedException or OperationCanceledException, ended?.ToString());
        Assert.False(stream.CanRead);
        Assert.Null(((MQTTnet.Channel.IMqttClientStreamEndPoints)stream).RemoteEndPoint);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => stream.ReadAsync(new byte[16]).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => stream.WriteAsync(new byte[] { 1 }).AsTask());
    }

    [Fact]
    public async Task WriteAsync_PeerReset_ThrowsIOExceptionWithTheSocketError()
    {
        await using var stream = await ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port));
        using (var peer = await _listener.AcceptSocketAsync().WaitAsync(Timeout))
        {
            peer.LingerState = new LingerOption(true, 0); // close with RST
        }

        // The first writes may still be accepted by the kernel before the RST is seen; a later one fails.
        var ex = await Assert.ThrowsAsync<IOException>(async () =>
        {
            for (var i = 0; i < 1_000; i++)
            {
                await stream.WriteAsync(new byte[1024]);
            }
        });
        Assert.IsType<SocketException>(ex.InnerException);
    }

    [Fact]
    public async Task ConnectAsync_NothingListening_ThrowsSocketException()
    {
        var port = Port;
        _listener.Stop();
        var provider = new BufferedSocketStreamProvider();

        var ex = await Assert.ThrowsAsync<SocketException>(() => provider.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), CancellationToken.None));
        Assert.Equal(SocketError.ConnectionRefused, ex.SocketErrorCode);
    }

    public ValueTask DisposeAsync()
    {
        _listener.Dispose();
        return ValueTask.CompletedTask;
    }

    private static async Task<Stream> ConnectAsync(EndPoint endPoint, bool coalescePackets = false)
    {
        using var cts = new CancellationTokenSource(Timeout);
        return await new BufferedSocketStreamProvider(coalescePackets).ConnectAsync(endPoint, cts.Token);
    }

    private static async Task<byte[]> ReceiveAsync(Socket peer, int count)
    {
        var received = new byte[count];
        var total = 0;
        while (total < count)
        {
            var read = await peer.ReceiveAsync(received.AsMemory(total)).AsTask().WaitAsync(Timeout);
            Assert.True(read > 0, "the connection ended early");
            total += read;
        }

        return received;
    }
}
