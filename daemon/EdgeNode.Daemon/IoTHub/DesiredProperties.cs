using System.Globalization;
using System.Text.Json.Nodes;
using EdgeNode.Daemon.Execution;
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
/// (Logging:LogLevel:Default), <c>modelPath</c> / <c>modelPaths</c> (Inference:ModelPath, Inference:ModelPaths: the model
/// file, and a file per execution provider, loaded with <see cref="ModelHost.ReloadAsync"/> as the last check of the
/// patch, so a file that is missing or not a GPT-2 model rejects the whole patch and the old model keeps serving).
/// <c>offloadThreshold</c> (ρ above which jobs go to the relay, Offload:RhoThreshold, <see cref="Offload.OffloadRouter.SetThreshold"/>).
/// Reported as not applied: <c>executorCount</c> (one executor per node), and unknown names.
/// </summary>
internal sealed class DesiredProperties(NodeOptions node, QueueOptions queue, IoTHubOptions hub, LiveConfiguration live, ModelHost model, Offload.OffloadRouter router)
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
        ["modelPath"] = model.Info.Path,
        ["offloadThreshold"] = router.Threshold,
    };

    /// <summary>
    /// Validates and applies <paramref name="patch"/> (a desired document or patch, with <c>$version</c>). A model change
    /// is loaded after every other value passed validation and swapped between jobs before the rest is applied.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled while a new model waited for the running job.</exception>
    public async Task<DesiredOutcome> ApplyAsync(JsonObject patch, CancellationToken cancellationToken)
    {
        var modelRequested = false;
        string? modelPath = null;
        IReadOnlyDictionary<string, string>? modelPaths = null;
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
                case "modelPath":
                    modelRequested = true;
                    if (value is null)
                    {
                        modelPath = model.StartPath; // removed: back to the configured file
                    }
                    else if (value is JsonValue p && p.TryGetValue<string>(out var path) && path.Length > 0)
                    {
                        modelPath = path;
                    }
                    else
                    {
                        errors.Add("modelPath must be a non-empty string (a model file on the node)");
                    }

                    break;
                case "modelPaths":
                    modelRequested = true;
                    if (value is null)
                    {
                        modelPaths = model.StartPaths;
                    }
                    else if (ProviderPaths(value, errors) is { } map)
                    {
                        modelPaths = map;
                    }

                    break;
                case "executorCount":
                    notApplied[name] = "unsupported: this build runs one executor per node";
                    break;
                case "offloadThreshold":
                    if (value is null)
                    {
                        changes.Add(() => router.SetThreshold(null)); // removed: back to Offload:RhoThreshold
                    }
                    else if (value is JsonValue t && t.GetValueKind() == System.Text.Json.JsonValueKind.Number && t.TryGetValue<double>(out var rho) && rho >= 0.01 && rho <= 100)
                    {
                        changes.Add(() => router.SetThreshold(rho));
                    }
                    else
                    {
                        errors.Add("offloadThreshold must be a number from 0.01 to 100 (ρ = λ/μ), got " + value.ToJsonString());
                    }

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

        if (modelRequested)
        {
            // Last check and first change: if the model is refused nothing else is applied either.
            var reload = await model.ReloadAsync(new ModelReloadRequest(modelPath, modelPaths), cancellationToken);
            if (reload.Status is ModelReloadStatus.Invalid or ModelReloadStatus.Busy)
            {
                return new DesiredOutcome(version, false, ["model not loaded: " + reload.Error], notApplied);
            }
        }

        foreach (var change in changes)
        {
            change();
        }

        return new DesiredOutcome(version, true, [], notApplied);
    }

    /// <summary>Reads <c>{"CUDA": "/models/fp16.onnx", ...}</c>; null (with an error added) when it is not that shape.</summary>
    private static Dictionary<string, string>? ProviderPaths(JsonNode value, List<string> errors)
    {
        if (value is not JsonObject o)
        {
            errors.Add("modelPaths must be an object of execution provider to model file, e.g. {\"CUDA\": \"/models/fp16.onnx\"}");
            return null;
        }

        var map = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (provider, file) in o)
        {
            if (EdgeNode.Shared.Inference.ExecutionProviderNames.Normalize(provider) is null)
            {
                errors.Add("modelPaths: '" + provider + "' is not an execution provider (known: " + string.Join(", ", EdgeNode.Shared.Inference.ExecutionProviderNames.All) + ")");
            }
            else if (file is JsonValue f && f.TryGetValue<string>(out var path) && path.Length > 0)
            {
                map[provider] = path;
            }
            else if (file is not null)
            {
                errors.Add("modelPaths:" + provider + " must be a non-empty string");
            }
        }

        return map;
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
