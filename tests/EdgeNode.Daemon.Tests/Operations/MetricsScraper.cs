using System.Globalization;

namespace EdgeNode.Daemon.Tests.Operations;

/// <summary>Reads Prometheus text-format samples from a real <c>/metrics</c> endpoint over HTTP.</summary>
internal sealed class MetricsScraper(Uri adminUrl) : IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = adminUrl, Timeout = TimeSpan.FromSeconds(30) };

    public async Task<Dictionary<string, double>> ScrapeAsync() => Parse(await _http.GetStringAsync(new Uri("/metrics", UriKind.Relative)));

    /// <summary>Samples of a Prometheus text-format exposition, keyed by name and labels.</summary>
    public static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var space = line.LastIndexOf(' ');
            var value = line[(space + 1)..];
            samples[line[..space]] = value switch
            {
                "+Inf" => double.PositiveInfinity, // Prometheus text format 0.0.4 spells infinities +Inf / -Inf
                "-Inf" => double.NegativeInfinity,
                _ => double.Parse(value, CultureInfo.InvariantCulture),
            };
        }

        return samples;
    }

    /// <summary>Sum of every sample of a metric (all label sets).</summary>
    public static double Sum(Dictionary<string, double> samples, string name) =>
        samples.Where(kv => kv.Key == name || kv.Key.StartsWith(name + "{", StringComparison.Ordinal)).Sum(kv => kv.Value);

    public static double Get(Dictionary<string, double> samples, string key) => samples.TryGetValue(key, out var v) ? v : 0;

    /// <summary>
    /// The invariant README "Metrics" states for every scrape (operations.md 1): queue depth + in flight + offloaded =
    /// accepted + recovered − (succeeded + failed + expired + cancelled) − lost.
    /// </summary>
    public static void AssertDepthReconciles(Dictionary<string, double> samples)
    {
        var depth = Get(samples, "edgenode_queue_depth") + Get(samples, "edgenode_jobs_in_flight") + Get(samples, "edgenode_jobs_offloaded");
        var open = Get(samples, "edgenode_jobs_accepted_total") + Get(samples, "edgenode_jobs_recovered_total")
            - Get(samples, "edgenode_jobs_succeeded_total") - Sum(samples, "edgenode_jobs_failed_total")
            - Get(samples, "edgenode_jobs_expired_total") - Get(samples, "edgenode_jobs_cancelled_total")
            - Get(samples, "edgenode_jobs_lost_total");
        Xunit.Assert.Equal(open, depth);
    }

    public void Dispose() => _http.Dispose();
}
