using System.ComponentModel.DataAnnotations;
using EdgeNode.Shared.Offload;

namespace EdgeNode.CloudRelay.Options;

/// <summary>Section <c>Relay</c>: the relay's listener, devices, limits and idempotency window.</summary>
internal sealed class RelayOptions
{
    public const string Section = "Relay";

    /// <summary>Kestrel listen URL(s), <c>;</c>-separated. Default <c>http://127.0.0.1:9700</c>; port 0 picks a free port.</summary>
    [Required]
    public string Url { get; set; } = "http://127.0.0.1:9700";

    /// <summary>The relay's name in events (<c>node</c> of <c>accepted</c> and <c>result</c>). Default <c>relay</c>.</summary>
    [RegularExpression(@"^[^/+#\s]{1,64}$", ErrorMessage = "Relay:NodeId must be 1-64 characters without '/', '+', '#' or spaces.")]
    public string NodeId { get; set; } = "relay";

    /// <summary>State directory (the synthesized demo model). Default <c>$STATE_DIRECTORY</c> (systemd) or <c>./.edgenode-relay</c>.</summary>
    public string? StateDirectory { get; set; }

    /// <summary>First part of the resource devices sign: <c>{Audience}/devices/{deviceId}</c>. Default <c>edgenode-relay</c>.</summary>
    [Required]
    public string Audience { get; set; } = SharedAccessSignature.DefaultAudience;

    /// <summary>Known devices by id: <c>Relay:Devices:{deviceId}:Key</c> (Base64, at least 16 bytes), optional <c>RequestsPerMinute</c>.</summary>
    public Dictionary<string, RelayDeviceOptions> Devices { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Quota of a device without its own <c>RequestsPerMinute</c>: requests per minute (fixed window). Default 600.</summary>
    [Range(1, 1_000_000)]
    public int DefaultRequestsPerMinute { get; set; } = 600;

    /// <summary>Largest request body, bytes (413 beyond it). Default 65536, the job contract's limit.</summary>
    [Range(1024, 16 * 1024 * 1024)]
    public int MaxBodyBytes { get; set; } = 64 * 1024;

    /// <summary>Jobs run at the same time (embedded: one model session each). Default 1.</summary>
    [Range(1, 256)]
    public int MaxConcurrentJobs { get; set; } = 1;

    /// <summary>Jobs waiting for a slot; one more gets 503 with Retry-After. Default 16.</summary>
    [Range(0, 100_000)]
    public int MaxQueuedJobs { get; set; } = 16;

    /// <summary>How long a job's outcome is kept for idempotent re-sends, seconds. Default 3600.</summary>
    [Range(1, 7 * 24 * 3600)]
    public int RetentionSeconds { get; set; } = 3600;

    /// <summary>Most outcomes kept (the oldest are dropped first). Default 100000.</summary>
    [Range(1, 10_000_000)]
    public int MaxRetainedOutcomes { get; set; } = 100_000;

    /// <summary><c>Embedded</c> (the shared inference core, default) or <c>Upstream</c> (an OpenAI-compatible /v1/completions server).</summary>
    [AllowedValues("Embedded", "Upstream", ErrorMessage = "Relay:Backend must be Embedded or Upstream.")]
    public string Backend { get; set; } = "Embedded";

    public EmbeddedBackendOptions Embedded { get; set; } = new();

    public UpstreamBackendOptions Upstream { get; set; } = new();

    /// <summary>The state directory after defaults, absolute.</summary>
    public string ResolveStateDirectory()
    {
        var dir = StateDirectory;
        if (string.IsNullOrWhiteSpace(dir))
        {
            var fromSystemd = Environment.GetEnvironmentVariable("STATE_DIRECTORY");
            dir = string.IsNullOrWhiteSpace(fromSystemd) ? ".edgenode-relay" : fromSystemd.Split(':')[0];
        }

        return Path.GetFullPath(dir);
    }

    /// <summary>Checks what DataAnnotations cannot (device keys, upstream URL); returns the failures, each naming its key.</summary>
    public IEnumerable<string> Check()
    {
        foreach (var (id, device) in Devices)
        {
            if (id.Length is 0 or > 128 || id.Any(c => c is '/' or '&' or '=' || char.IsControl(c) || char.IsWhiteSpace(c)))
            {
                yield return $"Relay:Devices:{id}: a device id is 1-128 characters without '/', '&', '=', spaces or control characters.";
            }

            if (device.KeyBytes() is not { Length: >= 16 })
            {
                yield return $"Relay:Devices:{id}:Key must be Base64 of at least 16 bytes (e.g. from 'edgenode-relay key').";
            }

            if (device.RequestsPerMinute is < 1)
            {
                yield return $"Relay:Devices:{id}:RequestsPerMinute must be at least 1.";
            }
        }

        if (Backend == "Upstream" && !Uri.TryCreate(Upstream.Url, UriKind.Absolute, out _))
        {
            yield return "Relay:Upstream:Url must be an absolute URL (e.g. http://127.0.0.1:8000) when Relay:Backend is Upstream.";
        }

        foreach (var url in Url.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            // Kestrel's listen URLs: http or https, a host (or * / + for every address) and a port of 0-65535.
            var parsable = url.Replace("://*", "://localhost", StringComparison.Ordinal).Replace("://+", "://localhost", StringComparison.Ordinal);
            if (!Uri.TryCreate(parsable, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                yield return $"Relay:Url: '{url}' is not a listen URL such as http://127.0.0.1:9700 (http or https, a port of 0-65535; ';' separates several).";
            }
        }

        if (Backend != "Upstream" && !string.IsNullOrWhiteSpace(Embedded.ModelPath) && !File.Exists(Embedded.ModelPath))
        {
            yield return $"Relay:Embedded:ModelPath names a file that does not exist: '{Embedded.ModelPath}'.";
        }
    }
}

/// <summary><c>Relay:Devices:{deviceId}</c>.</summary>
internal sealed class RelayDeviceOptions
{
    /// <summary>The device's key, Base64 (at least 16 bytes; 32 recommended). Secret: never logged.</summary>
    public string? Key { get; set; }

    /// <summary>This device's quota, requests per minute; default <c>Relay:DefaultRequestsPerMinute</c>.</summary>
    public int? RequestsPerMinute { get; set; }

    /// <summary>The key's bytes, or null when it is not Base64.</summary>
    public byte[]? KeyBytes()
    {
        if (string.IsNullOrWhiteSpace(Key))
        {
            return null;
        }

        var buffer = new byte[Key.Length];
        return Convert.TryFromBase64String(Key.Trim(), buffer, out var written) ? buffer[..written] : null;
    }
}

/// <summary><c>Relay:Embedded</c>: the shared inference core.</summary>
internal sealed class EmbeddedBackendOptions
{
    /// <summary>GPT-2 ONNX file. Empty: the tiny INT8 demonstration model synthesized into <c>{state}/models/</c>.</summary>
    public string? ModelPath { get; set; }

    /// <summary>ONNX Runtime intra-op threads per session. Default 2.</summary>
    [Range(1, 256)]
    public int IntraOpThreads { get; set; } = 2;
}

/// <summary><c>Relay:Upstream</c>: an OpenAI-compatible completions server (vLLM, TGI, llama.cpp server).</summary>
internal sealed class UpstreamBackendOptions
{
    /// <summary>Base URL, e.g. <c>http://127.0.0.1:8000</c>; requests go to <c>{Url}/v1/completions</c> (a URL already ending in <c>/completions</c> is used as is).</summary>
    public string? Url { get; set; }

    /// <summary>The <c>model</c> field sent upstream. Default <c>gpt2</c>.</summary>
    public string Model { get; set; } = "gpt2";

    /// <summary>Optional bearer token (<c>Authorization: Bearer ...</c>). Secret: never logged.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Timeout of one upstream call, seconds. Default 120.</summary>
    [Range(1, 3600)]
    public int TimeoutSeconds { get; set; } = 120;
}
