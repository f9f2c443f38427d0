using EdgeNode.Daemon.Hosting;
using MQTTnet;
using Polly;
using Polly.Retry;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>
/// Keeps one MQTTnet client connected: the loop shared by the data-plane broker link (<see cref="BrokerConnection"/>)
/// and the IoT Hub link (<see cref="IoTHub.IoTHubLink"/>). MQTTnet 5 has no managed client and its disconnect event can
/// be missed while the application keeps publishing (notes/mqttnet.md, MQTTnet issue 2244), so the loop
/// <list type="bullet">
/// <item>connects through a Polly retry pipeline with jittered exponential backoff from <see cref="InitialBackoff"/> up to
/// <see cref="MaxBackoff"/> (refused CONNACKs, throttling and network errors alike; never a tight loop: the reconnect-storm
/// case, ../shared/cases/operations.md 3);</item>
/// <item>pings every <see cref="KeepAlive"/> / 2 (or sooner when <see cref="Wake"/> is called) and drops a link whose ping
/// fails, so the next round reconnects;</item>
/// <item>optionally renews credentials by reconnecting once <see cref="RenewAt"/> has passed (IoT Hub SAS tokens have no
/// in-band refresh).</item>
/// </list>
/// What a connect does (options, subscriptions) and what the owner logs stay with the owner, through the callbacks.
/// </summary>
internal sealed class MqttLinkSupervisor
{
    private readonly Signal _wake = new();
    private ResiliencePipeline? _pipeline;

    /// <summary>The client kept connected.</summary>
    public required IMqttClient Client { get; init; }

    /// <summary>Clock for waits and backoff.</summary>
    public required TimeProvider Time { get; init; }

    /// <summary>One connect attempt: connect, check the CONNACK, subscribe. Throw to have it retried with backoff.</summary>
    public required Func<CancellationToken, ValueTask> ConnectOnce { get; init; }

    /// <summary>MQTT keep-alive of the link; the watchdog pings every half of it.</summary>
    public required TimeSpan KeepAlive { get; init; }

    /// <summary>First reconnect delay (doubled with jitter per failed attempt).</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Largest reconnect delay.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Called before each backoff wait with the failure message and the delay.</summary>
    public Action<string, TimeSpan>? OnConnectRetry { get; init; }

    /// <summary>Called when a ping of a link that looked connected failed (the link is then dropped).</summary>
    public Action? OnPingFailed { get; init; }

    /// <summary>Called when the loop finds the link down (after a failed ping, or after a wait).</summary>
    public Action? OnLinkLost { get; init; }

    /// <summary>When the credentials must be renewed by reconnecting; null: never.</summary>
    public Func<DateTimeOffset>? RenewAt { get; init; }

    /// <summary>Called just before a renewal reconnect.</summary>
    public Action? OnRenew { get; init; }

    /// <summary>Wakes the loop (call from the client's disconnected event): it checks the link at once.</summary>
    public void Wake() => _wake.Set();

    /// <summary>Runs until <paramref name="cancellationToken"/> is canceled; cancellation is quiet.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _pipeline ??= new ResiliencePipelineBuilder { TimeProvider = Time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(ex => ex is not OperationCanceledException),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = InitialBackoff,
                MaxDelay = MaxBackoff,
                OnRetry = args =>
                {
                    OnConnectRetry?.Invoke(args.Outcome.Exception?.Message ?? "unknown", args.RetryDelay);
                    return default;
                },
            })
            .Build();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                if (!Client.IsConnected)
                {
                    await _pipeline.ExecuteAsync(ConnectOnce, cancellationToken);
                }
                else if (!await Client.TryPingAsync(cancellationToken))
                {
                    OnPingFailed?.Invoke();
                    OnLinkLost?.Invoke();
                    await DisconnectQuietlyAsync();
                    continue;
                }

                var now = Time.GetUtcNow();
                var renewAt = RenewAt?.Invoke() ?? DateTimeOffset.MaxValue;
                if (Client.IsConnected && now >= renewAt)
                {
                    OnRenew?.Invoke();
                    await DisconnectQuietlyAsync();
                    continue;
                }

                var wait = KeepAlive / 2;
                if (renewAt - now < wait)
                {
                    wait = renewAt - now;
                }

                await _wake.WaitAsync(wait, Time, cancellationToken);
                if (!Client.IsConnected)
                {
                    OnLinkLost?.Invoke();
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Disconnects, ignoring a link that is already gone.</summary>
    public async Task DisconnectQuietlyAsync()
    {
        try
        {
            await Client.DisconnectAsync(new MqttClientDisconnectOptions(), CancellationToken.None);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Already gone.
        }
    }
}
