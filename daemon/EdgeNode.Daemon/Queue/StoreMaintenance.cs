using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Queue;

/// <summary>
/// Keeps the job database bounded: finished jobs older than <c>Queue:Retention</c> are purged (until then a
/// resubmitted id gets its stored outcome), then the LiteDB log is checkpointed into the data file so that
/// neither file grows without bound (notes/litedb.md: auto-checkpoint needs an idle moment).
/// Runs every quarter of the retention window, at most every 10 minutes. Besides, every
/// <see cref="CheckpointPeriod"/> it checkpoints the log once it holds more than <see cref="JobStore.CheckpointLogBytes"/>:
/// LiteDB's auto-checkpoint is off, because it ran inside the ingest commit that crossed 1,000 pages and held the
/// store lock for 14-43 ms (docs/BENCHMARKS.md "Ingest"); small checkpoints off the commit path hold it briefly.
/// </summary>
internal sealed class StoreMaintenance(StoreHost storeHost, IOptions<QueueOptions> options, TimeProvider time, ILogger<StoreMaintenance> logger) : BackgroundService
{
    private const int PurgeBatch = 1_000;

    /// <summary>How often the log size is checked for a checkpoint (100 ms).</summary>
    public static readonly TimeSpan CheckpointPeriod = TimeSpan.FromMilliseconds(100);

    /// <summary>Purges what the retention window allows, then checkpoints. Returns how many jobs were purged.</summary>
    public int RunOnce()
    {
        var store = storeHost.Store;
        var cutoff = time.GetUtcNow() - options.Value.Retention;
        var total = 0;
        int purged;
        do
        {
            purged = store.PurgeFinished(cutoff, PurgeBatch);
            total += purged;
        }
        while (purged == PurgeBatch);

        store.Checkpoint();
        return total;
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(PurgeLoopAsync(stoppingToken), CheckpointLoopAsync(stoppingToken));

    private async Task CheckpointLoopAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(CheckpointPeriod, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    storeHost.Store.CheckpointIfLogOver(JobStore.CheckpointLogBytes);
                }
                catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
                {
                    StoreLog.MaintenanceFailed(logger, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task PurgeLoopAsync(CancellationToken stoppingToken)
    {
        var period = TimeSpan.FromTicks(Math.Clamp(options.Value.Retention.Ticks / 4, TimeSpan.TicksPerSecond, TimeSpan.FromMinutes(10).Ticks));
        using var timer = new PeriodicTimer(period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    RunOnce();
                }
                catch (Exception ex) when (ex is IOException or LiteDB.LiteException)
                {
                    StoreLog.MaintenanceFailed(logger, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
