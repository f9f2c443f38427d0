using System.Net;
using System.Runtime.CompilerServices;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Server;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>
/// The in-process MQTTnet broker on 127.0.0.1 (<c>Mqtt:Embedded:Port</c>, default 1883), started when
/// <c>Mqtt:Host</c> is empty so that <c>mosquitto_pub -h 127.0.0.1</c> works out of the box.
/// Limits (notes/mqttnet.md): sessions only in memory, no shared subscriptions, and by default the
/// oldest of 1,000 pending messages per client is dropped; fleets use Mosquitto, EMQX or HiveMQ.
/// </summary>
internal sealed class EmbeddedBroker(IOptions<MqttOptions> options, ILogger<EmbeddedBroker> logger) : IHostedService, IAsyncDisposable
{
    private MqttServer? _server;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var mqtt = options.Value;
        if (!mqtt.UsesEmbeddedBroker || !mqtt.Embedded.Enabled)
        {
            return;
        }

        var serverOptions = new MqttServerFactory().CreateServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointBoundIPAddress(IPAddress.Loopback)
            .WithDefaultEndpointBoundIPV6Address(IPAddress.None)
            .WithDefaultEndpointPort(mqtt.Embedded.Port)
            .WithPersistentSessions()
            .WithMaxPendingMessagesPerClient(100_000)
            .Build();
        _server = new MqttServerFactory().CreateMqttServer(serverOptions);
        _server.ValidatingConnectionAsync += e =>
        {
            AssignClientIdIfEmpty(e);
            return Task.CompletedTask;
        };
        try
        {
            await _server.StartAsync();
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or IOException)
        {
            throw new InvalidOperationException(
                $"The embedded MQTT broker cannot listen on 127.0.0.1:{mqtt.Embedded.Port} ({ex.Message}). " +
                "Set Mqtt:Embedded:Port to a free port, or Mqtt:Host to use an external broker.", ex);
        }

        Log.EmbeddedBrokerStarted(logger, mqtt.Embedded.Port);
    }

    /// <summary>
    /// A client may connect with a zero-length client id and have the server assign one: MQTT 5 §3.1.3.1
    /// and MQTT 3.1.1 §3.1.3.1 (with CleanSession = 1). <c>mosquitto_pub</c>/<c>mosquitto_sub</c> do this by
    /// default. MQTTnet 5.2 assigns ids only to MQTT 5 clients and refuses 3.1.1 ones, so for those the
    /// CONNECT packet's id is filled in before MQTTnet checks it.
    /// </summary>
    internal static void AssignClientIdIfEmpty(ValidatingConnectionEventArgs e)
    {
        if (!string.IsNullOrEmpty(e.ClientId))
        {
            return;
        }

        var assigned = "auto-" + Guid.NewGuid().ToString("N");
        e.AssignedClientIdentifier = assigned;
        if (e.ProtocolVersion != MqttProtocolVersion.V500 && e.CleanSession == true)
        {
            try
            {
                ConnectPacket(e).ClientId = assigned;
            }
            catch (MissingFieldException)
            {
                // Another MQTTnet version: the client is refused as before (identifier rejected).
            }
        }
    }

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_connectPacket")]
    private static extern ref MqttConnectPacket ConnectPacket(ValidatingConnectionEventArgs e);

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is { IsStarted: true })
        {
            await _server.StopAsync(new MqttServerStopOptions());
        }
    }

    public ValueTask DisposeAsync()
    {
        _server?.Dispose();
        return ValueTask.CompletedTask;
    }
}
