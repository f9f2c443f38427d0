using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.AspNetCore;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace EdgeNode.TestSupport.IoTHub;

/// <summary>A device-to-cloud message as the emulator received it: topic, decoded property bag, payload.</summary>
public sealed record D2cMessage(string Topic, IReadOnlyDictionary<string, string> Properties, byte[] Payload)
{
    public string Text => Encoding.UTF8.GetString(Payload);
}

/// <summary>
/// One accepted device connection: the SAS token it presented and its expiry (X.509: no password, expiry
/// <see cref="DateTimeOffset.MaxValue"/>, the client certificate's thumbprint), and the transport it came over.
/// </summary>
public sealed record EmulatorConnection(string ClientId, string UserName, string Password, DateTimeOffset TokenExpiry, bool CleanSession,
    string? CertificateThumbprint = null, string Transport = "tcp");

/// <summary>How an emulator listens.</summary>
/// <param name="WebSockets">MQTT over WebSockets (TLS) on <c>wss://localhost:{port}/$iothub/websocket</c>, served by Kestrel with
/// MQTTnet.AspNetCore, instead of MQTT over TLS on a TCP port.</param>
/// <param name="X509">Also accept X.509 device authentication (TCP only): the TLS handshake asks for a client certificate and a
/// CONNECT without password must present the registered self-signed device certificate (thumbprint match, as IoT Hub's
/// "X.509 self-signed" authentication).</param>
public sealed record IoTHubEmulatorOptions(bool WebSockets = false, bool X509 = false);

/// <summary>
/// An Azure IoT Hub emulator for tests (test support, not product): an in-process MQTTnet server on 127.0.0.1 with
/// TLS (a self-signed certificate made here) that speaks the device side of IoT Hub's MQTT protocol as documented in
/// "Communicate with an IoT hub using the MQTT protocol" and checks credentials as documented in "Control access to IoT
/// Hub with shared access signatures": MQTT 3.1.1 only, ClientId = device id, user name
/// <c>{host}/{deviceId}/?api-version=2021-04-12</c>, password a SAS token whose signature is recomputed here
/// (independently of the product code) and whose expiry is enforced (the link is closed when it passes).
/// Twin GET / reported PATCH (204 + $version) / desired PATCH, direct methods, C2D (QoS 1, kept across restarts and
/// redelivered until PUBACK, completed by PUBACK) and D2C are implemented, plus 429 throttling of reported patches
/// and forced disconnects. State (twin, C2D queue, D2C log) survives <see cref="RestartAsync"/>.
/// Options (<see cref="IoTHubEmulatorOptions"/>): MQTT over WebSockets on <c>/$iothub/websocket</c> (Kestrel + MQTTnet.AspNetCore),
/// and X.509 device authentication with a client certificate made here.
/// </summary>
public sealed class IoTHubEmulator : IAsyncDisposable
{
    public const string HostName = "localhost";
    private const string HubSender = "$iothub";
    private readonly X509Certificate2 _certificate;
    private readonly Lock _gate = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<(int Status, string Body)>> _methodCalls = new();
    private readonly List<(string Mid, string Topic, byte[] Payload)> _c2dPending = [];
    private readonly List<string> _c2dCompleted = [];
    private readonly List<D2cMessage> _d2c = [];
    private readonly List<EmulatorConnection> _connections = [];
    private readonly List<string> _log = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private MqttServer? _server;
    private Microsoft.AspNetCore.Builder.WebApplication? _web;
    private readonly IoTHubEmulatorOptions _options;
    private readonly X509Certificate2? _deviceCertificate;
    private Timer? _expiryTimer;
    private DateTimeOffset? _currentExpiry;
    private int _throttleReported;
    private int _refuseConnections;
    private int _rid;

    private IoTHubEmulator(int port, string caFile, X509Certificate2 certificate, IoTHubEmulatorOptions options, string directory)
    {
        Port = port;
        CaFile = caFile;
        _certificate = certificate;
        _options = options;
        DeviceId = "edge-" + Guid.NewGuid().ToString("N")[..8];
        DeviceKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        if (options.X509)
        {
            // A self-signed device certificate, registered by thumbprint ("X.509 self-signed" authentication).
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=" + DeviceId, key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false)); // client authentication
            var now = DateTimeOffset.UtcNow;
            using var device = request.CreateSelfSigned(now.AddDays(-1), now.AddDays(30));
            DeviceCertificateFile = Path.Combine(directory, "device-cert.pem");
            DeviceKeyFile = Path.Combine(directory, "device-key.pem");
            File.WriteAllText(DeviceCertificateFile, device.ExportCertificatePem());
            File.WriteAllText(DeviceKeyFile, key.ExportPkcs8PrivateKeyPem());
            _deviceCertificate = X509CertificateLoader.LoadCertificate(device.RawData);
            DeviceThumbprint = device.GetCertHashString(HashAlgorithmName.SHA256);
        }
    }

    /// <summary>PEM certificate of the registered X.509 device (with <see cref="IoTHubEmulatorOptions.X509"/>).</summary>
    public string? DeviceCertificateFile { get; }

    /// <summary>PEM (PKCS#8) private key of <see cref="DeviceCertificateFile"/>.</summary>
    public string? DeviceKeyFile { get; }

    /// <summary>SHA-256 thumbprint of the registered device certificate.</summary>
    public string? DeviceThumbprint { get; }

    /// <summary>The connection string of an X.509 device: no SharedAccessKey.</summary>
    public string X509ConnectionString => "HostName=" + HostName + ";DeviceId=" + DeviceId;

    public int Port { get; }

    /// <summary>PEM file of the self-signed server certificate (give it to the device as its CA file).</summary>
    public string CaFile { get; }

    public string DeviceId { get; }

    public string DeviceKey { get; }

    public string ConnectionString => "HostName=" + HostName + ";DeviceId=" + DeviceId + ";SharedAccessKey=" + DeviceKey;

    /// <summary>Desired properties (without metadata) and their version.</summary>
    public JsonObject Desired { get; private set; } = [];

    public long DesiredVersion { get; private set; } = 1;

    public JsonObject Reported { get; private set; } = [];

    public long ReportedVersion { get; private set; } = 1;

    public int TwinGets { get; private set; }

    /// <summary>Reported patches received, including the ones answered 429.</summary>
    public int ReportedPatchRequests { get; private set; }

    public int Throttled { get; private set; }

    public bool IsDeviceConnected { get; private set; }

    /// <summary>Protocol events and refusals, for test diagnostics.</summary>
    public IReadOnlyList<string> Log { get { lock (_gate) { return [.. _log]; } } }

    public IReadOnlyList<EmulatorConnection> Connections { get { lock (_gate) { return [.. _connections]; } } }

    public IReadOnlyList<D2cMessage> D2c { get { lock (_gate) { return [.. _d2c]; } } }

    /// <summary>Ids ($.mid) of C2D messages the device completed (PUBACKed), in order; a repeat would show twice.</summary>
    public IReadOnlyList<string> C2dCompleted { get { lock (_gate) { return [.. _c2dCompleted]; } } }

    public int C2dPending { get { lock (_gate) { return _c2dPending.Count; } } }

    /// <summary>Starts an emulator on a free loopback port with a fresh self-signed certificate written into <paramref name="directory"/>.</summary>
    /// <param name="directory">Where the CA file (and with X.509 the device certificate and key) are written.</param>
    /// <param name="options">Transport and authentication options; default MQTT over TLS with SAS.</param>
    public static async Task<IoTHubEmulator> StartAsync(string directory, IoTHubEmulatorOptions? options = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + HostName, key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(HostName);
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.CreateSelfSigned(now.AddDays(-1), now.AddDays(30));
        var caFile = Path.Combine(directory, "iothub-emulator-ca.pem");
        await File.WriteAllTextAsync(caFile, cert.ExportCertificatePem());
        var withKey = X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx), null);
        var emulator = new IoTHubEmulator(Ports.FreeLoopbackPort(), caFile, withKey, options ?? new IoTHubEmulatorOptions(), directory);
        await emulator.StartServerAsync();
        return emulator;
    }

    /// <summary>CONNECT attempts seen, accepted or not.</summary>
    public int ConnectAttempts { get; private set; }

    /// <summary>Refuse the next <paramref name="count"/> connection attempts with "server unavailable" (how IoT Hub answers when throttling connects).</summary>
    public void RefuseConnections(int count) => Interlocked.Exchange(ref _refuseConnections, count);

    /// <summary>Answer the next <paramref name="count"/> reported-property patches with 429 (throttled).</summary>
    public void ThrottleReportedPatches(int count) => Interlocked.Exchange(ref _throttleReported, count);

    /// <summary>Stops the server (the device sees the link drop) and starts it again on the same port; state is kept.</summary>
    public async Task RestartAsync(Func<Task>? whileDown = null)
    {
        await StopServerAsync();
        if (whileDown is not null)
        {
            await whileDown();
        }

        await StartServerAsync();
    }

    /// <summary>Closes the device's connection from the hub side, as IoT Hub does on a forced disconnect.</summary>
    public async Task ForceDisconnectAsync()
    {
        var server = _server;
        if (server is null)
        {
            return;
        }

        foreach (var client in await server.GetClientsAsync())
        {
            await client.DisconnectAsync(new MqttServerClientDisconnectOptions { ReasonCode = MqttDisconnectReasonCode.ServerShuttingDown });
        }
    }

    /// <summary>Applies a desired-properties patch to the twin and sends it to the device if connected.</summary>
    public async Task<long> PatchDesiredAsync(JsonObject patch)
    {
        long version;
        lock (_gate)
        {
            foreach (var (k, v) in patch)
            {
                Desired[k] = v?.DeepClone();
            }

            version = ++DesiredVersion;
        }

        var body = (JsonObject)patch.DeepClone();
        body["$version"] = version;
        await SendAsync("$iothub/twin/PATCH/properties/desired/?$version=" + version.ToString(CultureInfo.InvariantCulture), Encoding.UTF8.GetBytes(body.ToJsonString()), MqttQualityOfServiceLevel.AtMostOnce);
        return version;
    }

    /// <summary>Invokes a direct method and waits for the device's response (status, JSON body).</summary>
    /// <exception cref="TimeoutException">No response within <paramref name="timeout"/>.</exception>
    public async Task<(int Status, JsonNode? Body)> InvokeMethodAsync(string name, JsonNode? payload, TimeSpan timeout)
    {
        var rid = Interlocked.Increment(ref _rid).ToString(CultureInfo.InvariantCulture);
        var call = new TaskCompletionSource<(int, string)>(TaskCreationOptions.RunContinuationsAsynchronously);
        _methodCalls[rid] = call;
        try
        {
            await SendAsync("$iothub/methods/POST/" + name + "/?$rid=" + rid, Encoding.UTF8.GetBytes(payload?.ToJsonString() ?? "null"), MqttQualityOfServiceLevel.AtMostOnce);
            var (status, body) = await call.Task.WaitAsync(timeout);
            return (status, string.IsNullOrEmpty(body) ? null : JsonNode.Parse(body));
        }
        finally
        {
            _methodCalls.TryRemove(rid, out _);
        }
    }

    /// <summary>Queues a C2D message (kept until the device PUBACKs it, across disconnects and restarts); returns its $.mid.</summary>
    public async Task<string> SendC2dAsync(byte[] payload)
    {
        var mid = Guid.NewGuid().ToString("N");
        var topic = "devices/" + DeviceId + "/messages/devicebound/%24.mid=" + mid + "&%24.to=%2Fdevices%2F" + DeviceId + "%2Fmessages%2FdeviceBound";
        lock (_gate)
        {
            _c2dPending.Add((mid, topic, payload));
        }

        if (IsDeviceConnected)
        {
            await SendAsync(topic, payload, MqttQualityOfServiceLevel.AtLeastOnce);
        }

        return mid;
    }

    /// <summary>Waits until <paramref name="condition"/> holds, re-checking whenever the emulator's state changes.</summary>
    /// <exception cref="TimeoutException">Still false after <paramref name="timeout"/>, with the protocol log.</exception>
    public async Task WaitUntilAsync(Func<IoTHubEmulator, bool> condition, TimeSpan timeout, string what)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                changed = _changed.Task;
            }

            if (condition(this))
            {
                return;
            }

            try
            {
                await changed.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException("IoT Hub emulator: timed out waiting for " + what + ". Log:\n" + string.Join('\n', Log));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopServerAsync();
        _certificate.Dispose();
        _deviceCertificate?.Dispose();
    }

    private void Changed(string? note = null)
    {
        lock (_gate)
        {
            if (note is not null)
            {
                _log.Add(note);
            }

            var old = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            old.TrySetResult();
        }
    }

    private async Task StartServerAsync()
    {
        MqttServer server;
        if (_options.WebSockets)
        {
            server = await StartWebSocketServerAsync();
        }
        else
        {
            var builder = new MqttServerFactory().CreateServerOptionsBuilder()
                .WithoutDefaultEndpoint()
                .WithEncryptedEndpoint()
                .WithEncryptedEndpointBoundIPAddress(IPAddress.Loopback)
                .WithEncryptedEndpointBoundIPV6Address(IPAddress.None)
                .WithEncryptedEndpointPort(Port)
                .WithEncryptionCertificate(_certificate)
                .WithEncryptionSslProtocol(SslProtocols.Tls12 | SslProtocols.Tls13)
                .WithTlsEndpointReuseAddress()
                .WithPersistentSessions();
            if (_options.X509)
            {
                // Ask for a client certificate: a SAS device sends none; a certificate must be the registered device's
                // (self-signed, so the chain errors are expected). CONNECT then checks the password or the certificate.
                builder.WithClientCertificate((_, certificate, _, _) =>
                {
                    var registered = certificate is null || certificate.GetCertHashString(HashAlgorithmName.SHA256) == DeviceThumbprint;
                    if (!registered)
                    {
                        Changed("TLS: refused a client certificate that is not the registered device certificate");
                    }

                    return registered;
                });
            }

            server = new MqttServerFactory().CreateMqttServer(builder.Build());
        }

        server.ValidatingConnectionAsync += ValidateAsync;
        server.InterceptingPublishAsync += OnPublishAsync;
        server.ClientSubscribedTopicAsync += OnSubscribedAsync;
        server.ClientAcknowledgedPublishPacketAsync += OnAcknowledgedAsync;
        server.ClientDisconnectedAsync += _ =>
        {
            IsDeviceConnected = false;
            Changed("device disconnected");
            return Task.CompletedTask;
        };
        if (!_options.WebSockets)
        {
            await server.StartAsync();
        }

        _server = server;
        _expiryTimer = new Timer(_ => _ = EnforceExpiryAsync(), null, TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(200));
        Changed("server started");
    }

    private async Task StopServerAsync()
    {
        if (_expiryTimer is not null)
        {
            await _expiryTimer.DisposeAsync();
            _expiryTimer = null;
        }

        var server = _server;
        _server = null;
        if (_web is { } web)
        {
            _web = null;
            await web.StopAsync(); // stops the hosted MQTT server with it
            await web.DisposeAsync();
        }
        else if (server is not null)
        {
            await server.StopAsync(new MqttServerStopOptions());
            server.Dispose();
        }

        IsDeviceConnected = false;
        Changed("server stopped");
    }

    private async Task EnforceExpiryAsync()
    {
        // IoT Hub closes a SAS-authenticated connection when its token expires (no in-band refresh).
        if (_currentExpiry is { } expiry && IsDeviceConnected && DateTimeOffset.UtcNow >= expiry)
        {
            _currentExpiry = null;
            Changed("token expired: disconnecting the device");
            try
            {
                await ForceDisconnectAsync();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Changed("expiry disconnect failed: " + ex.Message);
            }
        }
    }

    private Task ValidateAsync(ValidatingConnectionEventArgs e)
    {
        lock (_gate)
        {
            ConnectAttempts++;
        }

        if (Interlocked.Decrement(ref _refuseConnections) >= 0)
        {
            e.ReasonCode = MqttConnectReasonCode.ServerUnavailable;
            Changed("refused " + e.ClientId + ": throttled (server unavailable)");
            return Task.CompletedTask;
        }

        Interlocked.Exchange(ref _refuseConnections, 0);
        var refusal = Refusal(e);
        if (refusal is not null)
        {
            e.ReasonCode = refusal.Value.Code;
            Changed("refused " + e.ClientId + ": " + refusal.Value.Why);
            return Task.CompletedTask;
        }

        var x509 = string.IsNullOrEmpty(e.Password);
        var expiry = x509 ? DateTimeOffset.MaxValue : DateTimeOffset.FromUnixTimeSeconds(long.Parse(SasParts(e.Password)!["se"], CultureInfo.InvariantCulture));
        _currentExpiry = x509 ? null : expiry;
        lock (_gate)
        {
            _connections.Add(new EmulatorConnection(e.ClientId, e.UserName, e.Password ?? "", expiry, e.CleanSession == true,
                x509 ? e.ClientCertificate!.GetCertHashString(HashAlgorithmName.SHA256) : null, _options.WebSockets ? "websocket" : "tcp"));
        }

        IsDeviceConnected = true;
        Changed("accepted " + e.ClientId + " (token until " + expiry.ToString("O", CultureInfo.InvariantCulture) + ")");
        return Task.CompletedTask;
    }

    private (MqttConnectReasonCode Code, string Why)? Refusal(ValidatingConnectionEventArgs e)
    {
        if (e.ProtocolVersion != MqttProtocolVersion.V311)
        {
            return (MqttConnectReasonCode.UnsupportedProtocolVersion, "IoT Hub speaks MQTT 3.1.1 only, got " + e.ProtocolVersion);
        }

        if (e.ClientId != DeviceId)
        {
            return (MqttConnectReasonCode.ClientIdentifierNotValid, "ClientId must be the device id");
        }

        if (e.UserName != HostName + "/" + DeviceId + "/?api-version=2021-04-12")
        {
            return (MqttConnectReasonCode.BadUserNameOrPassword, "user name must be {host}/{deviceId}/?api-version=2021-04-12");
        }

        if (string.IsNullOrEmpty(e.Password))
        {
            // X.509: no password; the TLS client certificate must be the registered device certificate.
            if (!_options.X509)
            {
                return (MqttConnectReasonCode.BadUserNameOrPassword, "no SAS token and this hub has no X.509 device");
            }

            var presented = e.ClientCertificate;
            if (presented is null)
            {
                return (MqttConnectReasonCode.NotAuthorized, "no password and no client certificate");
            }

            return presented.GetCertHashString(HashAlgorithmName.SHA256) == DeviceThumbprint
                ? null
                : (MqttConnectReasonCode.NotAuthorized, "the client certificate is not the registered device certificate");
        }

        var sas = SasParts(e.Password);
        if (sas is null || !sas.TryGetValue("sr", out var sr) || !sas.TryGetValue("sig", out var sig) || !sas.TryGetValue("se", out var se)
            || !long.TryParse(se, NumberStyles.None, CultureInfo.InvariantCulture, out var expiry))
        {
            return (MqttConnectReasonCode.BadUserNameOrPassword, "password is not a SharedAccessSignature sr=..&sig=..&se=..");
        }

        // The documented formula, computed here independently of the product:
        // sig = Base64(HMACSHA256(Base64Decode(key), UrlEncode(resource) + "\n" + expiry)), sr = UrlEncode(resource).
        var resource = Uri.UnescapeDataString(sr);
        if (!string.Equals(resource, HostName + "/devices/" + DeviceId, StringComparison.OrdinalIgnoreCase))
        {
            return (MqttConnectReasonCode.NotAuthorized, "sr is not this device's resource");
        }

        var expected = Convert.ToBase64String(HMACSHA256.HashData(Convert.FromBase64String(DeviceKey), Encoding.UTF8.GetBytes(sr + "\n" + se)));
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(expected), Encoding.UTF8.GetBytes(Uri.UnescapeDataString(sig))))
        {
            return (MqttConnectReasonCode.NotAuthorized, "signature does not match");
        }

        if (DateTimeOffset.FromUnixTimeSeconds(expiry) <= DateTimeOffset.UtcNow)
        {
            return (MqttConnectReasonCode.NotAuthorized, "token expired");
        }

        return null;
    }

    private static Dictionary<string, string>? SasParts(string? password)
    {
        const string Prefix = "SharedAccessSignature ";
        if (password is null || !password.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return null;
        }

        var parts = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in password[Prefix.Length..].Split('&'))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                parts[pair[..eq]] = pair[(eq + 1)..];
            }
        }

        return parts;
    }

    private async Task OnPublishAsync(InterceptingPublishEventArgs e)
    {
        if (e.ClientId == HubSender)
        {
            return; // our own injected message: route it to the device
        }

        var topic = e.ApplicationMessage.Topic;
        var payload = e.ApplicationMessage.Payload.ToArray();
        e.ProcessPublish = false; // nothing the device sends is routed to other subscribers
        if (e.ApplicationMessage.QualityOfServiceLevel == MqttQualityOfServiceLevel.ExactlyOnce)
        {
            e.CloseConnection = true; // IoT Hub closes the connection on QoS 2
            Changed("QoS 2 publish on " + topic + ": closing");
            return;
        }

        var (segments, query) = Split(topic);
        if (topic.StartsWith("$iothub/twin/GET/", StringComparison.Ordinal))
        {
            string body;
            lock (_gate)
            {
                TwinGets++;
                var desired = (JsonObject)Desired.DeepClone();
                desired["$version"] = DesiredVersion;
                var reported = (JsonObject)Reported.DeepClone();
                reported["$version"] = ReportedVersion;
                body = new JsonObject { ["desired"] = desired, ["reported"] = reported }.ToJsonString();
            }

            Changed("twin GET");
            await SendAsync("$iothub/twin/res/200/?$rid=" + query.GetValueOrDefault("$rid"), Encoding.UTF8.GetBytes(body), MqttQualityOfServiceLevel.AtMostOnce);
        }
        else if (topic.StartsWith("$iothub/twin/PATCH/properties/reported/", StringComparison.Ordinal))
        {
            var rid = query.GetValueOrDefault("$rid");
            lock (_gate)
            {
                ReportedPatchRequests++;
            }

            if (Interlocked.Decrement(ref _throttleReported) >= 0)
            {
                lock (_gate)
                {
                    Throttled++;
                }

                Changed("reported PATCH throttled (429)");
                await SendAsync("$iothub/twin/res/429/?$rid=" + rid, [], MqttQualityOfServiceLevel.AtMostOnce);
                return;
            }

            Interlocked.Exchange(ref _throttleReported, 0);
            JsonObject? patch;
            try
            {
                patch = JsonNode.Parse(payload) as JsonObject;
            }
            catch (System.Text.Json.JsonException)
            {
                patch = null;
            }

            if (patch is null || payload.Length > 32 * 1024)
            {
                Changed("reported PATCH refused (400)");
                await SendAsync("$iothub/twin/res/400/?$rid=" + rid, [], MqttQualityOfServiceLevel.AtMostOnce);
                return;
            }

            long version;
            lock (_gate)
            {
                Merge(Reported, patch);
                version = ++ReportedVersion;
            }

            Changed("reported PATCH applied, $version " + version.ToString(CultureInfo.InvariantCulture));
            await SendAsync("$iothub/twin/res/204/?$rid=" + rid + "&$version=" + version.ToString(CultureInfo.InvariantCulture), [], MqttQualityOfServiceLevel.AtMostOnce);
        }
        else if (segments is ["$iothub", "methods", "res", var status] && _methodCalls.TryGetValue(query.GetValueOrDefault("$rid") ?? "", out var call))
        {
            call.TrySetResult((int.Parse(status, CultureInfo.InvariantCulture), Encoding.UTF8.GetString(payload)));
            Changed("method response " + status);
        }
        else if (topic.StartsWith("devices/" + DeviceId + "/messages/events/", StringComparison.Ordinal))
        {
            if (payload.Length > 256 * 1024)
            {
                e.CloseConnection = true;
                Changed("D2C message over 256 KB: closing");
                return;
            }

            var bag = topic["devices/".Length..].Split('/', 4) is { Length: 4 } p ? Split("?" + p[3]).Query : [];
            lock (_gate)
            {
                _d2c.Add(new D2cMessage(topic, bag, payload));
            }

            Changed("D2C " + topic);
        }
        else
        {
            Changed("publish to an unknown topic (IoT Hub would close the connection): " + topic);
            e.CloseConnection = true;
        }
    }

    private async Task OnSubscribedAsync(ClientSubscribedTopicEventArgs e)
    {
        Changed("subscribed " + e.TopicFilter.Topic);
        if (e.TopicFilter.Topic == "devices/" + DeviceId + "/messages/devicebound/#")
        {
            // Deliver everything not yet completed (messages unacknowledged on an earlier connection come again).
            List<(string Mid, string Topic, byte[] Payload)> pending;
            lock (_gate)
            {
                pending = [.. _c2dPending];
            }

            foreach (var m in pending)
            {
                await SendAsync(m.Topic, m.Payload, MqttQualityOfServiceLevel.AtLeastOnce);
            }
        }
    }

    private Task OnAcknowledgedAsync(ClientAcknowledgedPublishPacketEventArgs e)
    {
        var topic = e.PublishPacket.Topic;
        if (topic.StartsWith("devices/" + DeviceId + "/messages/devicebound/", StringComparison.Ordinal))
        {
            lock (_gate)
            {
                var index = _c2dPending.FindIndex(m => m.Topic == topic);
                if (index >= 0)
                {
                    _c2dCompleted.Add(_c2dPending[index].Mid);
                    _c2dPending.RemoveAt(index);
                }
            }

            Changed("C2D completed");
        }

        return Task.CompletedTask;
    }

    private async Task SendAsync(string topic, byte[] payload, MqttQualityOfServiceLevel qos)
    {
        var server = _server;
        if (server is null)
        {
            return;
        }

        var message = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(qos).Build();
        await server.InjectApplicationMessage(new InjectedMqttApplicationMessage(message) { SenderClientId = HubSender });
    }

    /// <summary>
    /// Kestrel on 127.0.0.1 with TLS (the emulator's certificate) serving MQTT over WebSockets on <c>/$iothub/websocket</c>
    /// (MQTTnet.AspNetCore); returns its MQTT server (started by the web host).
    /// </summary>
    private async Task<MqttServer> StartWebSocketServerAsync()
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, Port, l => l.UseHttps(_certificate)));
        builder.Services.AddHostedMqttServer(o => o.WithoutDefaultEndpoint().WithPersistentSessions());
        builder.Services.AddMqttConnectionHandler();
        builder.Services.AddConnections();
        var web = builder.Build();
        web.MapMqtt("/$iothub/websocket");
        var server = web.Services.GetRequiredService<MqttServer>();
        await web.StartAsync();
        _web = web;
        return server;
    }

    private static void Merge(JsonObject target, JsonObject patch)
    {
        foreach (var (k, v) in patch)
        {
            if (v is null)
            {
                target.Remove(k);
            }
            else if (v is JsonObject o && target[k] is JsonObject existing)
            {
                Merge(existing, o);
            }
            else
            {
                target[k] = v.DeepClone();
            }
        }
    }

    private static (string[] Segments, Dictionary<string, string> Query) Split(string topic)
    {
        var q = topic.IndexOf('?', StringComparison.Ordinal);
        var path = q < 0 ? topic : topic[..q];
        var query = new Dictionary<string, string>(StringComparer.Ordinal);
        if (q >= 0)
        {
            foreach (var pair in topic[(q + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                query[Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq])] = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
            }
        }

        return (path.Split('/', StringSplitOptions.RemoveEmptyEntries), query);
    }
}
