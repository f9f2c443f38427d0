using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Ingest;
using EdgeNode.Daemon.Mqtt;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>
/// The management loop over <see cref="IoTHubLink"/>: on every (re)connect it GETs the twin, applies the desired
/// properties (<see cref="DesiredProperties"/>) and reports; it applies desired patches as they come and reports the
/// <c>$version</c> applied with any errors; it answers direct methods (getStatus, getJob, cancelJob, drain, resume,
/// reloadModel) with JSON and status 200/400/404/409/500; and it sends telemetry (the status document) as D2C every
/// <c>IoTHub:TelemetryIntervalSeconds</c>, reporting the properties again at the same time (λ, μ, ρ move). Twin requests
/// answered 429 (throttled) or timing out are retried with jittered exponential backoff (Polly).
/// <c>reloadModel</c> runs in the background (the running job finishes first), so that a second call meanwhile is
/// answered 409 at once and the other methods keep working.
/// </summary>
internal sealed class IoTHubAgent : BackgroundService
{
    /// <summary>Twin documents must stay under 32 KB (IoT Hub limit for reported properties).</summary>
    public const int MaxReportedBytes = 32 * 1024;

    private readonly IoTHubLink _link;
    private readonly StatusPublisher _status;
    private readonly JobControl _jobs;
    private readonly DesiredProperties _desired;
    private readonly IoTHubOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<IoTHubAgent> _logger;
    private readonly ResiliencePipeline _twinPipeline;
    private readonly Signal _telemetryChanged = new();
    private readonly Execution.ModelHost _model;
    private Task _reload = Task.CompletedTask;
    private long _lastDesiredVersion = -1;
    private JsonObject _lastDesiredReport = new() { ["$version"] = null, ["status"] = "none" };

    public IoTHubAgent(IoTHubLink link, StatusPublisher status, JobControl jobs, DesiredProperties desired, Execution.ModelHost model, IOptions<IoTHubOptions> options, TimeProvider time, ILogger<IoTHubAgent> logger)
    {
        _model = model;
        _link = link;
        _status = status;
        _jobs = jobs;
        _desired = desired;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _desired.TelemetryIntervalChanged += _telemetryChanged.Set;
        _twinPipeline = new ResiliencePipelineBuilder { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<TwinThrottledException>().Handle<TimeoutException>(),
                MaxRetryAttempts = 10,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(_options.InitialBackoffMilliseconds),
                MaxDelay = TimeSpan.FromSeconds(_options.MaxBackoffSeconds),
                OnRetry = args =>
                {
                    IoTHubLog.TwinRetry(_logger, args.Outcome.Exception?.Message ?? "unknown", args.RetryDelay.TotalMilliseconds);
                    return default;
                },
            })
            .Build();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var telemetry = TelemetryLoopAsync(stoppingToken);
        try
        {
            await foreach (var item in _link.Control.ReadAllAsync(stoppingToken))
            {
                switch (item)
                {
                    case HubControl.Connected:
                        await SyncTwinAsync(stoppingToken);
                        break;
                    case HubControl.DesiredPatch patch:
                        await OnDesiredAsync(patch.Body, stoppingToken);
                        break;
                    case HubControl.Method method:
                        await OnMethodAsync(method, stoppingToken);
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        await telemetry;
        await _reload;
    }

    /// <summary>GET the twin, apply its desired document if its version is new, report.</summary>
    private async Task SyncTwinAsync(CancellationToken cancellationToken)
    {
        try
        {
            var response = await _twinPipeline.ExecuteAsync(async ct => Check(await _link.TwinRequestAsync(IoTHubTopics.TwinGet, [], TimeSpan.FromSeconds(30), ct)), cancellationToken);
            if (JsonNode.Parse(response.Body) is JsonObject twin && twin["desired"] is JsonObject desired)
            {
                await ApplyDesiredAsync(desired, cancellationToken);
            }

            await ReportAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or TwinThrottledException or JsonException)
        {
            IoTHubLog.TwinFailed(_logger, ex.Message);
        }
    }

    private async Task OnDesiredAsync(byte[] body, CancellationToken cancellationToken)
    {
        try
        {
            if (JsonNode.Parse(body) is JsonObject patch)
            {
                await ApplyDesiredAsync(patch, cancellationToken);
                await ReportAsync(cancellationToken);
            }
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or TwinThrottledException or JsonException)
        {
            IoTHubLog.TwinFailed(_logger, ex.Message);
        }
    }

    private async Task ApplyDesiredAsync(JsonObject desired, CancellationToken cancellationToken)
    {
        var version = desired["$version"] is JsonValue v && v.TryGetValue<long>(out var ver) ? ver : -1;
        if (version >= 0 && version == _lastDesiredVersion)
        {
            return; // already applied (a twin GET after a reconnect)
        }

        var outcome = await _desired.ApplyAsync(desired, cancellationToken);
        _lastDesiredVersion = version;
        var notApplied = new JsonObject();
        foreach (var (k, reason) in outcome.NotApplied)
        {
            notApplied[k] = reason;
        }

        _lastDesiredReport = new JsonObject
        {
            ["$version"] = version,
            ["status"] = outcome.Applied ? "applied" : "rejected",
            ["errors"] = new JsonArray([.. outcome.Errors.Take(20).Select(e => (JsonNode)JsonValue.Create(e)!)]),
            ["notApplied"] = notApplied,
        };
        if (outcome.Applied)
        {
            IoTHubLog.DesiredApplied(_logger, version, string.Join(", ", desired.Select(p => p.Key).Where(k => !k.StartsWith('$') && !outcome.NotApplied.ContainsKey(k))));
        }
        else
        {
            IoTHubLog.DesiredRejected(_logger, version, string.Join("; ", outcome.Errors));
        }
    }

    /// <summary>The reported properties: node facts, counters, live settings and the last desired version handled.</summary>
    internal JsonObject Reported()
    {
        var snapshot = _status.Snapshot();
        var jobs = snapshot["jobs"] is Dictionary<string, double> counters
            ? new JsonObject(counters.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value))))
            : [];
        var offload = snapshot["offload"] as Dictionary<string, object?> ?? [];
        return new JsonObject
        {
            ["version"] = snapshot["version"] as string,
            ["model"] = snapshot["model"] as string,
            ["precision"] = snapshot["precision"]?.ToString(),
            ["executionProvider"] = snapshot["execution_provider"] as string,
            ["queueDepth"] = snapshot["queue_depth"] is int q ? q : 0,
            ["inFlight"] = snapshot["in_flight"] is int f ? f : 0,
            ["draining"] = _jobs.Draining,
            ["jobs"] = jobs,

            // DESIGN.md §5, from the offload router's estimator: jobs/s, ρ = λ/μ, M/M/1 W = 1/(μ−λ) in seconds;
            // null while unknown or infinite (no service time measured yet, or ρ ≥ 1).
            ["queueing"] = new JsonObject
            {
                ["arrivalRate"] = offload.GetValueOrDefault("arrival_rate") as double?,
                ["serviceRate"] = offload.GetValueOrDefault("service_rate") as double?,
                ["utilization"] = offload.GetValueOrDefault("utilization") as double?,
                ["predictedTimeInSystemSeconds"] = offload.GetValueOrDefault("predicted_time_in_system_s") as double?,
                ["tokensPerSecond"] = offload.GetValueOrDefault("tokens_per_second") as double?,
                ["offloadEnabled"] = offload.GetValueOrDefault("enabled") as bool?,
                ["relayCircuit"] = offload.GetValueOrDefault("circuit") as string,
            },
            ["config"] = _desired.Current(),
            ["desired"] = _lastDesiredReport.DeepClone(),
        };
    }

    private async Task ReportAsync(CancellationToken cancellationToken)
    {
        var reported = Reported();
        var body = Encoding.UTF8.GetBytes(reported.ToJsonString());
        if (body.Length > MaxReportedBytes)
        {
            reported["desired"]!["errors"] = new JsonArray("errors truncated to keep the twin under 32 KB");
            body = Encoding.UTF8.GetBytes(reported.ToJsonString());
        }

        await _twinPipeline.ExecuteAsync(async ct => Check(await _link.TwinRequestAsync(IoTHubTopics.ReportedPatch, body, TimeSpan.FromSeconds(30), ct)), cancellationToken);
    }

    private static TwinResponse Check(TwinResponse response) => response.Status switch
    {
        >= 200 and < 300 => response,
        429 => throw new TwinThrottledException(),
        _ => throw new IOException("IoT Hub answered the twin request with status " + response.Status.ToString(System.Globalization.CultureInfo.InvariantCulture)),
    };

    private async Task OnMethodAsync(HubControl.Method call, CancellationToken cancellationToken)
    {
        if (call.Name == "reloadModel")
        {
            OnReloadModel(call, cancellationToken);
            return;
        }

        int status;
        JsonNode body;
        try
        {
            (status, body) = Invoke(call.Name, call.Body);
        }
        catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
        {
            (status, body) = (500, Error("internal", ex.Message));
        }

        await RespondAsync(call, status, body, report: call.Name is "drain" or "resume" or "cancelJob" && status == 200, cancellationToken);
    }

    private async Task RespondAsync(HubControl.Method call, int status, JsonNode body, bool report, CancellationToken cancellationToken)
    {
        try
        {
            await _link.RespondAsync(call.Rid, status, Encoding.UTF8.GetBytes(body.ToJsonString()), cancellationToken);
            IoTHubLog.MethodAnswered(_logger, call.Name, status);
        }
        catch (IOException ex)
        {
            IoTHubLog.MethodResponseFailed(_logger, call.Name, ex.Message);
        }

        if (report)
        {
            await TryReportAsync(cancellationToken);
        }
    }

    private async Task TryReportAsync(CancellationToken cancellationToken)
    {
        try
        {
            await ReportAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or TwinThrottledException)
        {
            IoTHubLog.TwinFailed(_logger, ex.Message);
        }
    }

    /// <summary>
    /// <c>reloadModel</c>, payload <c>{"path": "/models/model.onnx", "paths": {"CUDA": "/models/fp16.onnx"}}</c> (both
    /// optional; none reloads the current files): 200 with the new model once it serves, 400 for a bad payload, a
    /// missing file or a model without the GPT-2 signature (the old model keeps serving), 409 while another reload runs.
    /// The reload runs in the background; the answer is sent when it ends.
    /// </summary>
    private void OnReloadModel(HubControl.Method call, CancellationToken cancellationToken)
    {
        if (ReloadRequest(call.Body, out var problem) is not { } request)
        {
            _reload = Task.WhenAll(_reload, RespondAsync(call, 400, Error("invalid_request", problem!), report: false, cancellationToken));
            return;
        }

        // ReloadAsync claims the single reload slot before its first await, so the next method call already sees it taken.
        var reload = _model.ReloadAsync(request, cancellationToken);
        _reload = Task.WhenAll(_reload, AnswerReloadAsync(call, reload, cancellationToken));
    }

    private async Task AnswerReloadAsync(HubControl.Method call, Task<Execution.ModelReloadOutcome> reload, CancellationToken cancellationToken)
    {
        Execution.ModelReloadOutcome outcome;
        try
        {
            outcome = await reload;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return; // stopping: the old model stays; the hub times the call out
        }

        var info = outcome.Model;
        var (status, body) = outcome.Status switch
        {
            Execution.ModelReloadStatus.Busy => (409, Error("reload_in_progress", outcome.Error!)),
            Execution.ModelReloadStatus.Invalid => (400, Error("invalid_model", outcome.Error! + " (the previous model keeps serving)")),
            _ => (200, (JsonNode)new JsonObject
            {
                ["reloaded"] = outcome.Status == Execution.ModelReloadStatus.Swapped,
                ["model"] = Path.GetFileName(info.Path),
                ["path"] = info.Path,
                ["previous"] = outcome.PreviousPath,
                ["execution_provider"] = info.ExecutionProvider,
                ["precision"] = info.Precision,
                ["variant"] = info.Variant.ToString(),
                ["n_layer"] = info.NLayer,
                ["n_head"] = info.NHead,
                ["n_embd"] = info.NEmbd,
                ["vocab_size"] = info.VocabSize,
                ["n_positions"] = info.NPositions,
            }),
        };
        IoTHubLog.OperatorAction(_logger, "reloadModel: " + (status == 200 ? "serving " + info.Path : outcome.Error));
        await RespondAsync(call, status, body, report: status == 200, cancellationToken);
    }

    private static Execution.ModelReloadRequest? ReloadRequest(byte[] payload, out string? problem)
    {
        problem = null;
        JsonNode? request;
        try
        {
            request = payload.Length == 0 ? null : JsonNode.Parse(payload);
        }
        catch (JsonException)
        {
            problem = "the method payload is not JSON";
            return null;
        }

        if (request is null)
        {
            return new Execution.ModelReloadRequest(null, null);
        }

        const string Shape = "payload must be {\"path\": \"<model file>\", \"paths\": {\"<provider>\": \"<model file>\"}} (both optional)";
        if (request is not JsonObject o)
        {
            problem = Shape;
            return null;
        }

        string? path = null;
        if (o["path"] is { } p)
        {
            if (p is not JsonValue v || !v.TryGetValue<string>(out path) || path.Length == 0)
            {
                problem = Shape;
                return null;
            }
        }

        Dictionary<string, string>? paths = null;
        if (o["paths"] is { } ps)
        {
            if (ps is not JsonObject map)
            {
                problem = Shape;
                return null;
            }

            paths = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var (provider, file) in map)
            {
                if (file is not JsonValue f || !f.TryGetValue<string>(out var text) || text.Length == 0)
                {
                    problem = Shape;
                    return null;
                }

                paths[provider] = text;
            }
        }

        return new Execution.ModelReloadRequest(path, paths);
    }

    /// <summary>Runs a direct method; returns its status and JSON body.</summary>
    internal (int Status, JsonNode Body) Invoke(string name, byte[] payload)
    {
        JsonNode? request;
        try
        {
            request = payload.Length == 0 ? null : JsonNode.Parse(payload);
        }
        catch (JsonException)
        {
            return (400, Error("invalid_json", "the method payload is not JSON"));
        }

        switch (name)
        {
            case "getStatus":
                {
                    var status = JsonSerializer.SerializeToNode(_status.Snapshot())!.AsObject();
                    status["draining"] = _jobs.Draining;
                    status["iothub_connected"] = _link.IsConnected;
                    return (200, status);
                }

            case "getJob":
                {
                    if (JobId(request) is not { } id)
                    {
                        return (400, Error("invalid_request", "payload must be {\"id\": \"<job id>\"}"));
                    }

                    var record = _jobs.Get(id);
                    if (record is null)
                    {
                        return (404, Error("not_found", "no job with id " + id));
                    }

                    return (200, new JsonObject
                    {
                        ["id"] = record.Id,
                        ["status"] = record.Status,
                        ["attempts"] = record.Attempts,
                        ["accepted_at"] = record.AcceptedAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                        ["finished_at"] = record.FinishedAt?.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                        ["final_event"] = record.FinalEvent is { } final ? JsonNode.Parse(final) : null,
                    });
                }

            case "cancelJob":
                {
                    if (JobId(request) is not { } id)
                    {
                        return (400, Error("invalid_request", "payload must be {\"id\": \"<job id>\"}"));
                    }

                    var (outcome, status) = _jobs.Cancel(id);
                    var text = JobControl.Describe(outcome, status);
                    IoTHubLog.OperatorAction(_logger, "cancelJob " + id + ": " + text);
                    return outcome switch
                    {
                        CancelOutcome.Unknown => (404, Error("not_found", "no job with id " + id)),
                        CancelOutcome.AlreadyFinal or CancelOutcome.AlreadyFinishing => (409, Error("not_cancelable", "job " + id + " is " + text)),
                        _ => (200, new JsonObject { ["id"] = id, ["outcome"] = text }),
                    };
                }

            case "drain":
                _jobs.Draining = true;
                IoTHubLog.OperatorAction(_logger, "drain: new jobs are refused with " + JobControl.DrainingCode + "; the queue finishes");
                return (200, new JsonObject { ["draining"] = true, ["queue_depth"] = _status.Snapshot()["queue_depth"] is int d ? d : 0 });

            case "resume":
                _jobs.Draining = false;
                IoTHubLog.OperatorAction(_logger, "resume: taking new jobs again");
                return (200, new JsonObject { ["draining"] = false });

            default:
                return (404, Error("unknown_method", "unknown method " + name + "; known: getStatus, getJob, cancelJob, drain, resume, reloadModel"));
        }
    }

    private static string? JobId(JsonNode? request) =>
        request is JsonObject o && o["id"] is JsonValue v && v.TryGetValue<string>(out var id) && id.Length > 0 ? id : null;

    private static JsonObject Error(string code, string message) => new() { ["error"] = new JsonObject { ["code"] = code, ["message"] = message } };

    private async Task TelemetryLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                if (await _telemetryChanged.WaitAsync(TimeSpan.FromSeconds(_options.TelemetryIntervalSeconds), _time, cancellationToken))
                {
                    continue; // the interval changed: start a new period
                }

                if (!_link.IsConnected)
                {
                    continue;
                }

                try
                {
                    var snapshot = JsonSerializer.SerializeToUtf8Bytes(_status.Snapshot());
                    await _link.SendEventAsync([new("type", "telemetry")], snapshot, cancellationToken);
                }
                catch (IOException ex)
                {
                    IoTHubLog.TelemetryFailed(_logger, ex.Message);
                }

                await TryReportAsync(cancellationToken); // λ, μ, ρ and the counters move: keep the twin current
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }
}

/// <summary>IoT Hub answered a twin request with 429 (throttled): retried with backoff.</summary>
internal sealed class TwinThrottledException : Exception
{
    public TwinThrottledException()
        : base("IoT Hub throttled the request (429)")
    {
    }

    public TwinThrottledException(string message)
        : base(message)
    {
    }

    public TwinThrottledException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
