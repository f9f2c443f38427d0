using System.Net.Http.Headers;
using System.Text;
using EdgeNode.CloudRelay.Hosting;
using EdgeNode.Shared.Offload;
using EdgeNode.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeNode.CloudRelay.Tests;

/// <summary>
/// A real relay (Kestrel on 127.0.0.1, an ephemeral port) in the test process, with two devices, the tiny INT8
/// model shared by the tests, and a temporary state directory.
/// </summary>
internal sealed class RelayHost : IAsyncDisposable
{
    public const string Device = "gw-1";
    public const string OtherDevice = "gw-2";
    public static readonly byte[] DeviceKey = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
    public static readonly byte[] OtherKey = Enumerable.Range(101, 32).Select(i => (byte)i).ToArray();

    private readonly WebApplication _app;
    private readonly TempDirectory _state;

    private RelayHost(WebApplication app, TempDirectory state, Uri baseAddress)
    {
        _app = app;
        _state = state;
        BaseAddress = baseAddress;
        Http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    public IServiceProvider Services => _app.Services;

    public static async Task<RelayHost> StartAsync(IReadOnlyDictionary<string, string?>? overrides = null, TimeProvider? time = null)
    {
        var state = new TempDirectory();
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Url"] = "http://127.0.0.1:0",
            ["Relay:StateDirectory"] = state.Path,
            ["Relay:Embedded:ModelPath"] = Models.TinyInt8,
            ["Relay:Embedded:IntraOpThreads"] = "1",
            [$"Relay:Devices:{Device}:Key"] = Convert.ToBase64String(DeviceKey),
            [$"Relay:Devices:{OtherDevice}:Key"] = Convert.ToBase64String(OtherKey),
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        var app = RelayApp.Build([], settings, time is null ? null : services => services.AddSingleton(time));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new RelayHost(app, state, new Uri(address));
    }

    /// <summary>A valid token for <paramref name="device"/> signed with <paramref name="key"/>, expiring in an hour unless told.</summary>
    public static string Token(string device = Device, byte[]? key = null, long? expiry = null) =>
        SharedAccessSignature.Create(SharedAccessSignature.DeviceResource(SharedAccessSignature.DefaultAudience, device),
            key ?? DeviceKey, expiry ?? DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(), device);

    /// <summary>POST /v1/jobs with a JSON body and the given Authorization value (none when null).</summary>
    public Task<HttpResponseMessage> PostAsync(string json, string? authorization, bool sse = false) =>
        PostAsync(Encoding.UTF8.GetBytes(json), authorization, sse);

    public async Task<HttpResponseMessage> PostAsync(byte[] body, string? authorization, bool sse = false, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/jobs") { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (authorization is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", authorization);
        }

        request.Headers.Accept.ParseAdd(sse ? "text/event-stream" : "application/json");
        return await Http.SendAsync(request, sse ? HttpCompletionOption.ResponseHeadersRead : HttpCompletionOption.ResponseContentRead, cancellationToken);
    }

    /// <summary>The value of one Prometheus sample line (<c>name{labels}</c> exactly as exposed), or 0 when absent.</summary>
    public async Task<double> MetricAsync(string sample)
    {
        var text = await Http.GetStringAsync("/metrics");
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(sample + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(sample.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        _state.Dispose();
    }
}

/// <summary>Reads a Server-Sent Events body into (event, data) pairs.</summary>
internal static class Sse
{
    public static async Task<List<(string Event, string Data)>> ReadAllAsync(HttpResponseMessage response, Action<string, string>? onEvent = null)
    {
        var events = new List<(string, string)>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(), Encoding.UTF8);
        string? name = null;
        var data = new StringBuilder();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0)
            {
                if (data.Length > 0)
                {
                    events.Add((name ?? "message", data.ToString()));
                    onEvent?.Invoke(name ?? "message", data.ToString());
                }

                name = null;
                data.Clear();
            }
            else if (line.StartsWith("event: ", StringComparison.Ordinal))
            {
                name = line[7..];
            }
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                data.Append(line[6..]);
            }
        }

        return events;
    }
}

/// <summary>Tests that start relays (each loads an ONNX Runtime session) run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RelayCollection
{
    public const string Name = "Relay";
}
