using Prometheus;

namespace EdgeNode.CloudRelay.Metrics;

/// <summary>
/// The relay's Prometheus metrics (prometheus-net), in a registry of their own so that several relays in one
/// process (tests) do not mix. Served as Prometheus text at <c>/metrics</c>. Names: <c>edgenode_relay_*</c>.
/// </summary>
internal sealed class RelayMetrics
{
    public RelayMetrics()
    {
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        Requests = factory.CreateCounter("edgenode_relay_requests_total", "POST /v1/jobs answers by HTTP status code.", "code");
        Jobs = factory.CreateCounter("edgenode_relay_jobs_total", "Job outcomes produced by this relay, by final status.", "status");
        AuthFailures = factory.CreateCounter("edgenode_relay_auth_failures_total", "Requests refused with 401, by reason.", "reason");
        Throttled = factory.CreateCounter("edgenode_relay_throttled_total", "Requests refused with 429/503 and Retry-After, by reason (quota, queue_full, upstream).", "reason");
        Replays = factory.CreateCounter("edgenode_relay_idempotent_replays_total", "Re-sends answered from a stored or running job (same device and id).");
        BackendUnavailable = factory.CreateCounter("edgenode_relay_backend_unavailable_total", "Jobs the backend could not take (502/503), not stored.");
        Running = factory.CreateGauge("edgenode_relay_jobs_running", "Jobs running in the backend now.");
        Queued = factory.CreateGauge("edgenode_relay_jobs_queued", "Jobs waiting for a backend slot now.");
        Retained = factory.CreateGauge("edgenode_relay_outcomes_retained", "Outcomes kept for idempotent re-sends.");
        ArrivalRate = factory.CreateGauge("edgenode_relay_arrival_rate_jobs_per_second", "λ: admitted jobs per second (10 s window).");
        ServiceRate = factory.CreateGauge("edgenode_relay_service_rate_jobs_per_second", "μ: jobs per second per slot, from the last 64 service times.");
        TokensPerSecond = factory.CreateGauge("edgenode_relay_tokens_per_second", "Generated tokens per second of service (last 64 jobs).");
        ServiceSeconds = factory.CreateHistogram("edgenode_relay_job_service_seconds", "Backend time per job, seconds.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.01, 2, 14) });
    }

    public CollectorRegistry Registry { get; }

    public Counter Requests { get; }

    public Counter Jobs { get; }

    public Counter AuthFailures { get; }

    public Counter Throttled { get; }

    public Counter Replays { get; }

    public Counter BackendUnavailable { get; }

    public Gauge Running { get; }

    public Gauge Queued { get; }

    public Gauge Retained { get; }

    public Gauge ArrivalRate { get; }

    public Gauge ServiceRate { get; }

    public Gauge TokensPerSecond { get; }

    public Histogram ServiceSeconds { get; }
}
