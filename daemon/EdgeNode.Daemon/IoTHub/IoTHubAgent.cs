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
/// <c>IoTHub:TelemetryIntervalSeconds</c>. Twin requests answered 429 (throttled) or timing out are retried with
/// jittered exponential backoff (Polly).
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
    private long _lastDesiredVersion = -1;
    private JsonObject _lastDesiredReport = new() { ["$version"] = null, ["status"] = "none" };

    public IoTHubAgent(IoTHubLink link, StatusPublisher status, JobControl jobs, DesiredProperties desired, IOptions<IoTHubOptions> options, TimeProvider time, ILogger<IoTHubAgent> logger)
    {
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
    }

    /// <summary>GET the twin, apply its desired document if its version is new, report.</summary>
    private async Task SyncTwinAsync(CancellationToken cancellationToken)
    {
        try
        {
            var response = await _twinPipeline.ExecuteAsync(async ct => Check(await _link.TwinRequestAsync(IoTHubTopics.TwinGet, [], TimeSpan.FromSeconds(30), ct)), cancellationToken);
            if (JsonNode.Parse(response.Body) is JsonObject twin && twin["desired"] is JsonObject desired)
            {
                ApplyDesired(desired);
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
                ApplyDesired(patch);
                await ReportAsync(cancellationToken);
            }
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or TwinThrottledException or JsonException)
        {
            IoTHubLog.TwinFailed(_logger, ex.Message);
        }
    }

    private void ApplyDesired(JsonObject desired)
    {
        var version = desired["$version"] is JsonValue v && v.TryGetValue<long>(out var ver) ? ver : -1;
        if (version >= 0 && version == _lastDesiredVersion)
        {
            return; // already applied (a twin GET after a reconnect)
        }

        var outcome = _desired.Apply(desired);
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

        try
        {
            await _link.RespondAsync(call.Rid, status, Encoding.UTF8.GetBytes(body.ToJsonString()), cancellationToken);
            IoTHubLog.MethodAnswered(_logger, call.Name, status);
        }
        catch (IOException ex)
        {
            IoTHubLog.MethodResponseFailed(_logger, call.Name, ex.Message);
        }

        if (call.Name is "drain" or "resume" or "cancelJob" && status == 200)
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

            case "reloadModel":
                // Honest answer: the model host loads once at start; swapping a live ORT session safely (in-flight
                // job, provider chain, TensorRT engine build) is not implemented.
                return (409, Error("restart_required", "reloadModel is not supported while running: change Inference:ModelPath / ModelPaths and restart the service (systemctl restart edgenode)"));

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
