using System.Text;
using EdgeNode.Daemon.Health;
using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using EdgeNode.Daemon.Queue;
using EdgeNode.TestSupport;
using Microsoft.Extensions.Logging.Abstractions;
using static EdgeNode.Daemon.Tests.Queue.Items;

namespace EdgeNode.Daemon.Tests.Operations;

/// <summary>
/// ../shared/cases/operations.md 1 (metrics reconcile at every scrape) at the first moment it can break: right after
/// the store opens with jobs from the previous run, before the executor starts. A real LiteDB file and the real
/// Prometheus exposition.
/// </summary>
public sealed class StoreHostMetricsTests
{
    [Fact]
    public async Task StartAsync_WithQueuedJobsFromThePreviousRun_FirstScrapeAlreadyReconciles()
    {
        // Newcomer check, session 5: the first scrape after a restart showed recovered 300 and queue depth 0, because
        // only the executor (started later) told the metrics where the depth comes from.
        using var dir = new TempDirectory();
        using (var previous = JobStore.Open(dir.Path, TimeProvider.System, NullLogger.Instance))
        {
            previous.CommitBatch([.. Enumerable.Range(0, 5).Select(i => Accept("prev-" + i))]);
        }

        var metrics = new NodeMetrics();
        using var host = new StoreHost(Microsoft.Extensions.Options.Options.Create(new NodeOptions { Id = "n1", StateDirectory = dir.Path }),
            new NodeState(), metrics, TimeProvider.System, NullLogger<JobStore>.Instance, new NodeSignals());
        await host.StartAsync(CancellationToken.None);

        using var exposition = new MemoryStream();
        await metrics.WriteAsync(exposition, new NodeState(), CancellationToken.None);
        var samples = MetricsScraper.Parse(Encoding.UTF8.GetString(exposition.ToArray()));

        Assert.Equal(5, MetricsScraper.Get(samples, "edgenode_jobs_recovered_total"));
        Assert.Equal(5, MetricsScraper.Get(samples, "edgenode_queue_depth"));
        MetricsScraper.AssertDepthReconciles(samples);
    }
}
