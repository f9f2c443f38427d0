using System.ComponentModel.DataAnnotations;

namespace EdgeNode.Daemon.Options;

/// <summary>
/// Section <c>Offload</c> (DESIGN.md §5, §8): queue-aware offload of jobs to the cloud relay (<c>edgenode-relay</c>).
/// Offload is on when <see cref="Enabled"/> is true, or when it is unset and <see cref="RelayUrl"/> is set; with
/// neither, the node behaves exactly as without this feature (every job local, <c>queue_full</c> when full).
/// </summary>
internal sealed class OffloadOptions
{
    public const string Section = "Offload";

    /// <summary>True/false forces offload on/off; unset (default) means "on when <see cref="RelayUrl"/> is set".</summary>
    public bool? Enabled { get; set; }

    /// <summary>The relay's base URL, e.g. <c>https://relay.example.com</c>; jobs go to <c>{RelayUrl}/v1/jobs</c>.</summary>
    public string? RelayUrl { get; set; }

    /// <summary>This node's device id at the relay (<c>Relay:Devices:{id}</c> there). Default: <c>Node:Id</c>.</summary>
    public string? DeviceId { get; set; }

    /// <summary>This device's key, Base64 (the same bytes as the relay's <c>Relay:Devices:{id}:Key</c>). Never logged.</summary>
    public string? DeviceKey { get; set; }

    /// <summary>ρ = λ/μ above which the node counts as overloaded and routes jobs to the relay. Default 0.85.</summary>
    [Range(0.01, 100)]
    public double RhoThreshold { get; set; } = 0.85;

    /// <summary>ρ below which an overloaded node routes locally again (hysteresis). Default 0.75; at most <see cref="RhoThreshold"/>.</summary>
    [Range(0.01, 100)]
    public double RhoExitThreshold { get; set; } = 0.75;

    /// <summary>While overloaded, jobs stay local while fewer than this many are ahead (keeps the executor busy). Default 2.</summary>
    [Range(0, 10_000)]
    public int LocalBacklogJobs { get; set; } = 2;

    /// <summary>λ's sliding window. Default 10 s.</summary>
    public TimeSpan ArrivalWindow { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Timeout of one relay request (answer included). Default 60 s.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long the circuit stays open before a probe. Default 15 s.</summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>The circuit breaker's sampling window. Default 30 s.</summary>
    public TimeSpan SamplingDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Failed requests in the sampling window needed before the circuit may open (Polly minimum 2). Default 3.</summary>
    [Range(2, 10_000)]
    public int MinimumThroughput { get; set; } = 3;

    /// <summary>Jobs sent to the relay at the same time. Default 4.</summary>
    [Range(1, 256)]
    public int MaxConcurrent { get; set; } = 4;

    /// <summary>True when offload is on (see the class remarks).</summary>
    public bool IsEnabled => Enabled ?? !string.IsNullOrWhiteSpace(RelayUrl);

    /// <summary>Checks the rules DataAnnotations cannot express; null when valid, else the message (never contains the key).</summary>
    public string? Validate()
    {
        if (RhoExitThreshold > RhoThreshold)
        {
            return "Offload:RhoExitThreshold must be at most Offload:RhoThreshold.";
        }

        if (ArrivalWindow <= TimeSpan.Zero || RequestTimeout <= TimeSpan.Zero || BreakDuration < TimeSpan.FromMilliseconds(500) || SamplingDuration < TimeSpan.FromMilliseconds(500))
        {
            return "Offload:ArrivalWindow and RequestTimeout must be positive; BreakDuration and SamplingDuration at least 0.5 s (Polly's minimum).";
        }

        if (!IsEnabled)
        {
            return null;
        }

        if (!Uri.TryCreate(RelayUrl, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            return "Offload is enabled but Offload:RelayUrl is not an absolute http(s) URL.";
        }

        if (string.IsNullOrEmpty(DeviceKey))
        {
            return "Offload is enabled but Offload:DeviceKey is empty.";
        }

        try
        {
            if (Convert.FromBase64String(DeviceKey).Length == 0)
            {
                return "Offload:DeviceKey decodes to no bytes.";
            }
        }
        catch (FormatException)
        {
            return "Offload:DeviceKey is not valid Base64.";
        }

        return null;
    }
}
