using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;
using static EdgeNode.Daemon.Tests.Queue.Items;

namespace EdgeNode.Daemon.Tests.Queue;

/// <summary>OFFLOADED jobs in the store (DESIGN.md §5): persisted before the HTTP call, resumable, returnable.</summary>
public sealed class JobStoreOffloadTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly ManualTimeProvider _time = new(Start);
    private readonly ListLogger _log = new();

    public void Dispose() => _dir.Dispose();

    private JobStore Open() => JobStore.Open(_dir.Path, _time, _log);

    private static IngestItem Offload(JobRequest job) => Accept(job) with { Offload = true, EventPayload = JobEvents.Accepted(job.Id, "relay", Node) };

    [Fact]
    public void CommitBatch_OffloadItem_IsStoredOffloadedNotQueued()
    {
        using var store = Open();

        var decisions = store.CommitBatch([Accept(Job("a")), Offload(Job("b")), Accept(Job("c"))]);

        Assert.All(decisions, d => Assert.Equal(IngestDecisionKind.Accepted, d.Kind));
        Assert.Equal(JobStatuses.Offloaded, store.Get("b")!.Status);
        Assert.Equal(2, store.CountQueued());
        Assert.Equal(1, store.CountOffloaded());
        Assert.Equal(["b"], store.ListOffloaded().Select(j => j.Id));
        Assert.Equal("a", store.TakeNext()!.Id);
        Assert.Equal("c", store.TakeNext()!.Id);
        Assert.Null(store.TakeNext());
    }

    /// <summary>Newcomer check, session 4: resending the id of an OFFLOADED job got an <c>accepted</c> event saying
    /// "local". The stored record keeps the route its acceptance named, also after it came back to the local queue, so
    /// the repeated acceptance is the first one again, byte-identical.</summary>
    [Fact]
    public void CommitBatch_ResubmittedOffloadedId_DuplicateKeepsTheRelayRouteOfItsAcceptance()
    {
        using var store = Open();
        store.CommitBatch([Offload(Job("off")), Accept(Job("loc"))]);

        var again = store.CommitBatch([Accept(Job("off")), Accept(Job("loc"))]);

        Assert.Equal(["relay", "local"], again.Select(d => d.Existing!.AcceptedRoute));
        Assert.True(store.ReturnToQueue("off")); // the relay failed: it runs locally, its acceptance said relay
        Assert.Equal("relay", Assert.Single(store.CommitBatch([Accept(Job("off"))])).Existing!.AcceptedRoute);
    }

    [Fact]
    public void ListOffloaded_AfterReopen_ReturnsTheOffloadedJobs()
    {
        using (var store = Open())
        {
            store.CommitBatch([Offload(Job("x")), Offload(Job("y", priority: 5)), Accept(Job("z"))]);
        }

        using var reopened = Open();

        Assert.Equal(2, reopened.CountOffloaded());
        Assert.Equal(["y", "x"], reopened.ListOffloaded().Select(j => j.Id)); // queue order: priority, then FIFO
        Assert.Equal(1, reopened.CountQueued());
    }

    [Fact]
    public void Finish_OffloadedJob_RecordsOutcomeAndLeavesOffloaded()
    {
        using var store = Open();
        store.CommitBatch([Offload(Job("r"))]);
        var finalEvent = JobEvents.Result("r", "text", "length", 3, 4, "relay", "relay", 1, 2, 3, 6);

        Assert.True(store.Finish("r", JobStatuses.Succeeded, finalEvent));

        Assert.Equal(0, store.CountOffloaded());
        Assert.Empty(store.ListOffloaded());
        var record = store.Get("r")!;
        Assert.Equal(JobStatuses.Succeeded, record.Status);
        Assert.Equal(finalEvent, record.FinalEvent);
        Assert.False(store.ReturnToQueue("r"));
        Assert.Null(store.TakeNext());
    }

    [Fact]
    public void ReturnToQueue_OffloadedJob_QueuesItAtItsOriginalPlace()
    {
        using var store = Open();
        store.CommitBatch([Accept(Job("first")), Offload(Job("second")), Accept(Job("third"))]);

        Assert.True(store.ReturnToQueue("second"));

        Assert.Equal(JobStatuses.Queued, store.Get("second")!.Status);
        Assert.Equal(0, store.CountOffloaded());
        Assert.Equal(3, store.CountQueued());
        Assert.Equal("first", store.TakeNext()!.Id);
        Assert.Equal("second", store.TakeNext()!.Id);
        Assert.Equal("third", store.TakeNext()!.Id);
    }

    [Fact]
    public void ReturnToQueue_NotOffloaded_ReturnsFalseAndChangesNothing()
    {
        using var store = Open();
        store.CommitBatch([Accept(Job("q"))]);

        Assert.False(store.ReturnToQueue("q"));
        Assert.False(store.ReturnToQueue("unknown"));

        Assert.Equal(1, store.CountQueued());
        Assert.Equal(JobStatuses.Queued, store.Get("q")!.Status);
    }

    [Fact]
    public void ReturnToQueue_AfterReopen_SurvivesAndQueues()
    {
        using (var store = Open())
        {
            store.CommitBatch([Offload(Job("o"))]);
            Assert.True(store.ReturnToQueue("o"));
        }

        using var reopened = Open();

        Assert.Equal(0, reopened.CountOffloaded());
        Assert.Equal("o", reopened.TakeNext()!.Id);
    }
}
