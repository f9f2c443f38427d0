using System.Globalization;
using System.Text.Json.Nodes;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>The outcome of one desired-properties document or patch: applied settings, or why nothing was applied.</summary>
internal sealed record DesiredOutcome(long Version, bool Applied, IReadOnlyList<string> Errors, IReadOnlyDictionary<string, string> NotApplied);

/// <summary>
/// Applies desired properties live, all-or-nothing per patch: every property is validated first, and if any value is
/// invalid nothing is changed and the errors are reported. A null value restores the configured value. Live:
/// <c>statusIntervalSeconds</c> (Node:StatusIntervalSeconds), <c>queueMaxJobs</c> / <c>queueMaxBytes</c> (Queue:MaxJobs,
/// Queue:MaxBytes), <c>telemetryIntervalSeconds</c> (IoTHub:TelemetryIntervalSeconds), <c>logLevel</c>
/// (Logging:LogLevel:Default). Reported as not applied: <c>modelPath</c> / <c>modelPaths</c> (need a restart),
/// <c>executorCount</c> and <c>offloadThreshold</c> (not supported by this build), and unknown names.
/// </summary>
internal sealed class DesiredProperties(NodeOptions node, QueueOptions queue, IoTHubOptions hub, LiveConfiguration live)
{
    private static readonly string[] LogLevels = Enum.GetNames<LogLevel>();
    private readonly int _initialStatusInterval = node.StatusIntervalSeconds;
    private readonly int _initialMaxJobs = queue.MaxJobs;
    private readonly long _initialMaxBytes = queue.MaxBytes;
    private readonly int _initialTelemetry = hub.TelemetryIntervalSeconds;

    /// <summary>Raised after a patch changed the telemetry interval.</summary>
    public event Action? TelemetryIntervalChanged;

    /// <summary>The live settings as reported under <c>config</c>.</summary>
    public JsonObject Current() => new()
    {
        ["statusIntervalSeconds"] = node.StatusIntervalSeconds,
        ["queueMaxJobs"] = queue.MaxJobs,
        ["queueMaxBytes"] = queue.MaxBytes,
        ["telemetryIntervalSeconds"] = hub.TelemetryIntervalSeconds,
        ["logLevel"] = live.Get("Logging:LogLevel:Default") ?? "configured",
    };

    /// <summary>Validates and applies <paramref name="patch"/> (a desired document or patch, with <c>$version</c>).</summary>
    public DesiredOutcome Apply(JsonObject patch)
    {
        var version = patch["$version"] is JsonValue v && v.TryGetValue<long>(out var ver) ? ver : -1;
        var errors = new List<string>();
        var notApplied = new Dictionary<string, string>(StringComparer.Ordinal);
        var changes = new List<Action>();
        foreach (var (name, value) in patch)
        {
            if (name.StartsWith('$'))
            {
                continue; // $version, $metadata
            }

            switch (name)
            {
                case "statusIntervalSeconds":
                    if (Int(name, value, 1, 86_400, _initialStatusInterval, errors) is { } status)
                    {
                        changes.Add(() => node.StatusIntervalSeconds = (int)status);
                    }

                    break;
                case "queueMaxJobs":
                    if (Int(name, value, 1, 10_000_000, _initialMaxJobs, errors) is { } jobs)
                    {
                        changes.Add(() => queue.MaxJobs = (int)jobs);
                    }

                    break;
                case "queueMaxBytes":
                    if (Int(name, value, 1024, long.MaxValue, _initialMaxBytes, errors) is { } bytes)
                    {
                        changes.Add(() => queue.MaxBytes = bytes);
                    }

                    break;
                case "telemetryIntervalSeconds":
                    if (Int(name, value, 1, 86_400, _initialTelemetry, errors) is { } telemetry)
                    {
                        changes.Add(() =>
                        {
                            hub.TelemetryIntervalSeconds = (int)telemetry;
                            TelemetryIntervalChanged?.Invoke();
                        });
                    }

                    break;
                case "logLevel":
                    if (value is null)
                    {
                        changes.Add(() => live.SetLive("Logging:LogLevel:Default", null));
                    }
                    else if (value is JsonValue s && s.TryGetValue<string>(out var level) && LogLevels.Contains(level, StringComparer.OrdinalIgnoreCase))
                    {
                        var canonical = LogLevels.First(l => string.Equals(l, level, StringComparison.OrdinalIgnoreCase));
                        changes.Add(() => live.SetLive("Logging:LogLevel:Default", canonical));
                    }
                    else
                    {
                        errors.Add("logLevel must be one of " + string.Join(", ", LogLevels));
                    }

                    break;
                case "modelPath" or "modelPaths":
                    notApplied[name] = "not applied: requires restart (set Inference:ModelPath / Inference:ModelPaths in the configuration and restart the service)";
                    break;
                case "executorCount":
                    notApplied[name] = "unsupported: this build runs one executor per node";
                    break;
                case "offloadThreshold":
                    notApplied[name] = "unsupported: this build has no relay offload";
                    break;
                default:
                    notApplied[name] = "unknown property (ignored)";
                    break;
            }
        }

        if (errors.Count > 0)
        {
            return new DesiredOutcome(version, false, errors, notApplied);
        }

        foreach (var change in changes)
        {
            change();
        }

        return new DesiredOutcome(version, true, [], notApplied);
    }

    private static long? Int(string name, JsonNode? value, long min, long max, long initial, List<string> errors)
    {
        if (value is null)
        {
            return initial; // a removed desired property restores the configured value
        }

        if (value is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number && v.TryGetValue<long>(out var n) && n >= min && n <= max)
        {
            return n;
        }

        errors.Add(string.Create(CultureInfo.InvariantCulture, $"{name} must be an integer from {min} to {max}, got {value.ToJsonString()}"));
        return null;
    }
}

/// <summary>
/// A configuration provider whose keys are changed at run time (e.g. <c>Logging:LogLevel:Default</c> from the twin);
/// it is added last, so its keys win, and a change reloads what listens to configuration (the logger filters).
/// </summary>
internal sealed class LiveConfiguration : Microsoft.Extensions.Configuration.ConfigurationProvider, Microsoft.Extensions.Configuration.IConfigurationSource
{
    public Microsoft.Extensions.Configuration.IConfigurationProvider Build(Microsoft.Extensions.Configuration.IConfigurationBuilder builder) => this;

    public string? Get(string key) => Data.TryGetValue(key, out var value) ? value : null;

    /// <summary>Sets (or with null removes) a key and signals a reload.</summary>
    public void SetLive(string key, string? value)
    {
        if (value is null)
        {
            Data.Remove(key);
        }
        else
        {
            Data[key] = value;
        }

        OnReload();
    }
}
