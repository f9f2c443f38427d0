using System.Net;
using System.Net.Sockets;

namespace EdgeNode.TestSupport;

/// <summary>Ephemeral loopback ports for tests.</summary>
public static class Ports
{
    /// <summary>A port that was free on 127.0.0.1 a moment ago (the OS picks it; it is released before return).</summary>
    public static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
