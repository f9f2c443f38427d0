using System.ComponentModel.DataAnnotations;
using System.Globalization;
using EdgeNode.Shared.Inference;

namespace EdgeNode.Daemon.Options;

/// <summary>Section <c>Node</c> (DESIGN.md §8): who this node is and where its state lives.</summary>
internal sealed class NodeOptions
{
    public const string Section = "Node";

    /// <summary>Node id used in topics (<c>edgenode/nodes/{Id}/...</c>) and events. Default: the host name.</summary>
    [RegularExpression(@"^[^/+#\s]{1,64}$", ErrorMessage = "Node:Id must be 1-64 characters without '/', '+', '#' or spaces.")]
    public string Id { get; set; } = Environment.MachineName;

    /// <summary>
    /// State directory (queue database, lock file, synthesized demo model). Default: <c>$STATE_DIRECTORY</c>
    /// when systemd sets it (<c>StateDirectory=edgenode</c> gives <c>/var/lib/edgenode</c>), else <c>./.edgenode</c>.
    /// </summary>
    public string? StateDirectory { get; set; }

    /// <summary>Seconds between retained status messages on <c>{prefix}/nodes/{Id}/status</c>.</summary>
    [Range(1, 86_400)]
    public int StatusIntervalSeconds { get; set; } = 30;

    /// <summary>The state directory after defaults are applied, as an absolute path.</summary>
    public string ResolveStateDirectory()
    {
        var dir = StateDirectory;
        if (string.IsNullOrWhiteSpace(dir))
        {
            var fromSystemd = Environment.GetEnvironmentVariable("STATE_DIRECTORY");
            // systemd may pass several colon-separated directories; the first is ours.
            dir = string.IsNullOrWhiteSpace(fromSystemd) ? ".edgenode" : fromSystemd.Split(':')[0];
        }

        return Path.GetFullPath(dir);
    }
}

/// <summary>Section <c>Mqtt</c> (DESIGN.md §3, §8): the broker link of the data plane.</summary>
internal sealed class MqttOptions
{
    public const string Section = "Mqtt";

    /// <summary>Broker host name or address. Empty means the embedded broker on 127.0.0.1.</summary>
    public string? Host { get; set; }

    /// <summary>Broker TCP port (1883 plain, 8883 TLS by convention).</summary>
    [Range(1, 65535)]
    public int Port { get; set; } = 1883;

    /// <summary>MQTT protocol version: 5 (default) or 3 (3.1.1).</summary>
    [AllowedValues(3, 5, ErrorMessage = "Mqtt:ProtocolVersion must be 5 or 3 (3.1.1).")]
    public int ProtocolVersion { get; set; } = 5;

    /// <summary>Client id; default <c>edgenode-{Node:Id}</c>. Stable so that the broker keeps our persistent session.</summary>
    public string? ClientId { get; set; }

    public string? Username { get; set; }

    public string? Password { get; set; }

    /// <summary>Connect with TLS (port 8883 by convention). The server certificate is checked against
    /// <see cref="CaFile"/> when given, else against the system trust store.</summary>
    public bool UseTls { get; set; }

    /// <summary>PEM file with the CA certificate(s) that sign the broker's certificate.</summary>
    public string? CaFile { get; set; }

    /// <summary>PEM (certificate, with its key unless <see cref="ClientKeyFile"/> is given) or PKCS#12 file for TLS client authentication.</summary>
    public string? ClientCertificateFile { get; set; }

    /// <summary>PEM private key of <see cref="ClientCertificateFile"/> when it is kept in a separate file.</summary>
    public string? ClientKeyFile { get; set; }

    /// <summary>Topic prefix; default <c>edgenode</c> (DESIGN.md §3).</summary>
    [RegularExpression(@"^[^+#\s]+$", ErrorMessage = "Mqtt:TopicPrefix must be non-empty without '+', '#' or spaces.")]
    public string TopicPrefix { get; set; } = "edgenode";

    /// <summary>Keep-alive period in seconds.</summary>
    [Range(5, 3600)]
    public int KeepAliveSeconds { get; set; } = 30;

    /// <summary>Session expiry in seconds for MQTT 5 persistent sessions (the broker keeps QoS 1 jobs for us meanwhile).</summary>
    [Range(0, int.MaxValue)]
    public int SessionExpirySeconds { get; set; } = 86_400;

    public EmbeddedBrokerOptions Embedded { get; set; } = new();

    /// <summary>True when no external broker is configured.</summary>
    public bool UsesEmbeddedBroker => string.IsNullOrWhiteSpace(Host);
}

/// <summary>Section <c>Mqtt:Embedded</c>: the in-process MQTTnet broker used when <c>Mqtt:Host</c> is empty.</summary>
internal sealed class EmbeddedBrokerOptions
{
    public bool Enabled { get; set; } = true;

    /// <summary>Loopback port of the embedded broker.</summary>
    [Range(1, 65535)]
    public int Port { get; set; } = 1883;
}

/// <summary>Section <c>Inference</c> (DESIGN.md §2, §8).</summary>
internal sealed class InferenceOptions : IValidatableObject
{
    public const string Section = "Inference";

    /// <summary>GPT-2 ONNX file (Optimum <c>model.onnx</c>, a no-position_ids export or a legacy merged decoder): the
    /// default file, used by every execution provider without a <see cref="ModelPaths"/> entry (so the CPU file).
    /// Empty: the tiny INT8 demonstration model is synthesized into the state directory on first run.</summary>
    public string? ModelPath { get; set; }

    /// <summary>ONNX Runtime intra-op threads (default 2, the cores of the boards we target).</summary>
    [Range(1, 256)]
    public int IntraOpThreads { get; set; } = 2;

    /// <summary>
    /// Execution providers to try, in order: "TensorRT", "CUDA", "CPU" (default all three). Each one that cannot be
    /// used (library missing, no device) is logged as a warning naming it and why, then the next is tried; the one
    /// chosen is reported by /readyz and status. Null by default (the configuration binder would append configured
    /// items to a pre-filled list): see <see cref="EffectiveExecutionProviders"/>.
    /// </summary>
    public string[]? ExecutionProviders { get; set; }

    /// <summary>The configured list, or the default ["TensorRT", "CUDA", "CPU"] when none is configured.</summary>
    public IReadOnlyList<string> EffectiveExecutionProviders =>
        ExecutionProviders is { Length: > 0 } configured ? configured : ExecutionProviderNames.All;

    /// <summary>A model file per provider, e.g. <c>Inference:ModelPaths:TensorRT</c> = an FP16 or QDQ file. Dynamic INT8
    /// (QOperator) files are CPU-only: without an entry here, GPU providers are skipped for such a default file.</summary>
    public Dictionary<string, string> ModelPaths { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>TensorRT fp16 kernels (<c>trt_fp16_enable</c>); default true.</summary>
    public bool TensorRtFp16 { get; set; } = true;

    /// <summary>TensorRT int8 kernels (<c>trt_int8_enable</c>; needs a QDQ model or calibration); default false.</summary>
    public bool TensorRtInt8 { get; set; }

    /// <summary>Checks provider names and per-provider files; each message names the configuration key.</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var providers = EffectiveExecutionProviders;
        for (int i = 0; i < providers.Count; i++)
        {
            if (ExecutionProviderNames.Normalize(providers[i]) is null)
            {
                yield return new ValidationResult(
                    string.Create(CultureInfo.InvariantCulture,
                        $"Inference:ExecutionProviders:{i} is '{providers[i]}', which is not an execution provider (known: {string.Join(", ", ExecutionProviderNames.All)})."),
                    [nameof(ExecutionProviders)]);
            }
        }

        foreach (var (provider, path) in ModelPaths ?? [])
        {
            if (ExecutionProviderNames.Normalize(provider) is null)
            {
                yield return new ValidationResult(
                    $"Inference:ModelPaths:{provider} names an unknown execution provider (known: {string.Join(", ", ExecutionProviderNames.All)}).",
                    [nameof(ModelPaths)]);
            }
            else if (string.IsNullOrWhiteSpace(path) || !File.Exists(path))
            {
                yield return new ValidationResult($"Inference:ModelPaths:{provider} names a file that does not exist: '{path}'.", [nameof(ModelPaths)]);
            }
        }
    }

    /// <summary>Shared-library settings for <see cref="Gpt2Model.Load"/>.</summary>
    /// <param name="stateDirectory">The node's state directory: TensorRT caches go to <c>{state}/trt-cache</c>.</param>
    /// <param name="onStage">Receives start-up stages ("building TensorRT engine").</param>
    /// <param name="modelPaths">Per-provider files to use instead of <see cref="ModelPaths"/> (a model reload); null: the configured ones.</param>
    public InferenceSettings ToSettings(string stateDirectory, Action<string>? onStage, IReadOnlyDictionary<string, string>? modelPaths = null) => new()
    {
        IntraOpThreads = IntraOpThreads,
        ExecutionProviders = [.. EffectiveExecutionProviders.Select(p => ExecutionProviderNames.Normalize(p)!)],
        ModelPaths = (modelPaths ?? ModelPaths ?? []).ToDictionary(kv => ExecutionProviderNames.Normalize(kv.Key)!, kv => kv.Value, StringComparer.Ordinal),
        TensorRtCacheDirectory = Path.Combine(stateDirectory, "trt-cache"),
        TensorRtFp16 = TensorRtFp16,
        TensorRtInt8 = TensorRtInt8,
        OnStage = onStage,
    };
}

/// <summary>Section <c>Queue</c> (DESIGN.md §4, §8).</summary>
internal sealed class QueueOptions
{
    public const string Section = "Queue";

    /// <summary>Maximum request payload in bytes (DESIGN.md §3: 64 KiB).</summary>
    [Range(1024, 16 * 1024 * 1024)]
    public int MaxPayloadBytes { get; set; } = 64 * 1024;

    /// <summary>Largest group commit of the ingest loop (jobs per LiteDB transaction).</summary>
    [Range(1, 10_000)]
    public int MaxBatch { get; set; } = 256;

    /// <summary>Most jobs waiting in the queue; beyond it new jobs get <c>queue_full</c> (DESIGN.md §4.4).</summary>
    [Range(1, 10_000_000)]
    public int MaxJobs { get; set; } = 10_000;

    /// <summary>Most bytes (prompts, ids, stop sequences) waiting in the queue; beyond it new jobs get <c>queue_full</c>.</summary>
    [Range(1024, long.MaxValue)]
    public long MaxBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>Runs a job may start before it fails as poison (<c>attempts_exhausted</c>); a crash mid-run counts as one (DESIGN.md §4.3).</summary>
    [Range(1, 100)]
    public int MaxAttempts { get; set; } = 3;

    /// <summary>How long finished jobs are kept so that a resubmitted id gets its stored outcome; then they are purged.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "365.00:00:00")]
    public TimeSpan Retention { get; set; } = TimeSpan.FromHours(24);
}

/// <summary>Section <c>Execution</c>: the local executor.</summary>
internal sealed class ExecutionOptions
{
    public const string Section = "Execution";

    /// <summary>
    /// When true the node accepts, commits and acknowledges jobs but runs none of them: they wait QUEUED (deadlines
    /// still apply when execution resumes). For maintenance windows, draining a board before a model swap, and the
    /// ingest benchmark. Read at start; restart to resume.
    /// </summary>
    public bool Paused { get; set; }
}

/// <summary>Section <c>Admin</c>: the loopback HTTP endpoint (<c>/healthz</c>, <c>/readyz</c>).</summary>
internal sealed class AdminOptions
{
    public const string Section = "Admin";

    /// <summary>Listen URL; default <c>http://127.0.0.1:9600</c>. Port 0 picks a free port. Empty disables it.</summary>
    public string? Url { get; set; } = "http://127.0.0.1:9600";
}
