using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;
using static EdgeNode.Daemon.Tests.Queue.Items;

namespace EdgeNode.Daemon.Tests.Queue;

/// <summary>
/// cases/durability.md 4 (disk full) with a real LiteDB database whose log writes fail with ENOSPC on demand.
/// (Checked by hand on a 1 MiB tmpfs as well: same exceptions, same recovery.)
/// </summary>
public sealed class JobStoreDiskFullTests : IDisposable
{
    private const int Enospc = 28;

    private readonly TempDirectory _dir = new();
    private readonly ManualTimeProvider _time = new(Start);
    private readonly ListLogger _log = new();
    private readonly Disk _disk = new();

    public void Dispose()
    {
        // LiteDB 5.0.21 leaves a transaction undisposed when a rollback fails on a full disk, and its finalizer
        // rethrows on the finalizer thread, which ends the process (it crashed the test host once). Run the
        // finalizers now, so a regression fails here, in the test that caused it.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        _dir.Dispose();
    }

    private JobStore Open() => JobStore.Open(_dir.Path, _time, _log, inner => new FullableStream(inner, _disk));

    [Fact]
    public void CommitBatch_DiskFull_ThrowsIOExceptionAndKeepsAcceptedJobsReadable()
    {
        using var store = Open();
        store.CommitBatch([Accept("before"), Reject("rejected-before")]);
        _disk.Full = true;

        var ex = Assert.ThrowsAny<IOException>(() => store.CommitBatch([Accept("during")]));

        Assert.Equal(Enospc, ex.HResult);
        Assert.Equal(JobStatuses.Queued, store.Get("before")!.Status);
        // The outcome is kept; "before"'s accepted event lived in memory only and the reopen after the I/O error
        // dropped it (JobStore remarks).
        Assert.Equal(["rejected-before"], store.ReadOutbox(10).Select(e => e.JobId));
        Assert.Null(store.Get("during"));
    }

    [Fact]
    public void CommitBatch_SpaceReturns_AcceptsAgainWithoutRestart()
    {
        using var store = Open();
        store.CommitBatch([Accept("before")]);
        _disk.Full = true;
        var failedBatch = new[] { Accept("during-1"), Accept("during-2") };
        Assert.ThrowsAny<IOException>(() => store.CommitBatch(failedBatch));
        Assert.ThrowsAny<IOException>(() => store.TakeNext());

        _disk.Full = false;
        var retried = store.CommitBatch(failedBatch);
        var fresh = store.CommitBatch([Accept("after")]);

        Assert.All(retried, d => Assert.Equal(IngestDecisionKind.Accepted, d.Kind));
        Assert.Equal(IngestDecisionKind.Accepted, fresh[0].Kind);
        Assert.Equal(["before", "during-1", "during-2", "after"], Drain(store));
        Assert.Contains(_log.Entries, e => e.Id.Id == 1103);
    }

    [Fact]
    public void CommitBatch_SpaceReturnsWithDeliveredEntriesPendingDeletion_CommitsAndKeepsTheOutboxConsistent()
    {
        // The daemon stopped here once (newcomer check, session 3): a delivered entry's deferred deletion was pending
        // when the disk filled; the next commit reopened the store inside its transaction (which resets the pending
        // list) and then removed the snapshot's prefix from the emptied list: ArgumentException, IngestService died.
        using var store = Open();
        store.CommitBatch([Accept("a")]);
        var published = store.ReadOutbox(10);
        store.MarkDelivered([.. published.Select(e => e.Seq)]); // deferred: deleted by the next write transaction
        _disk.Full = true;
        Assert.ThrowsAny<IOException>(() => store.CommitBatch([Accept("b")]));

        _disk.Full = false;
        var decisions = store.CommitBatch([Accept("c")]);

        Assert.Equal(IngestDecisionKind.Accepted, decisions[0].Kind);
        var outbox = store.ReadOutbox(10);
        Assert.DoesNotContain(outbox, e => published.Any(p => p.Seq == e.Seq)); // a's event was delivered and is gone
        Assert.Contains(outbox, e => Text(e.Payload).Contains("\"c\"", StringComparison.Ordinal));
        Assert.Equal(outbox.Count, store.OutboxCount);
    }

    [Fact]
    public void ReadOutbox_DiskFullWhileMarkingDelivered_DeliveredEntriesAreNotReadAgain()
    {
        // Newcomer check, session 4: on a full disk the node published the same 244 accepted events every ~2 s until
        // space returned. The deletion of delivered entries failed, the store reopened, and the reopen forgot which
        // entries this process had already delivered, so the outbox read them again.
        using var store = Open();
        store.CommitBatch([Reject("a"), Reject("b")]); // outcomes: durable outbox entries
        _disk.Full = true;
        Assert.ThrowsAny<IOException>(() => store.CommitBatch([Reject("c")]));
        Assert.Null(store.Get("c")); // reopened: the outbox is read from LiteDB from now on
        var published = store.ReadOutbox(10);
        Assert.Equal(2, published.Count);

        Assert.ThrowsAny<IOException>(() => store.MarkDelivered([.. published.Select(e => e.Seq)]));

        Assert.Empty(store.ReadOutbox(10));
        Assert.Empty(store.ReadOutbox(10));
        Assert.Equal(0, store.OutboxCount);
        _disk.Full = false;
        store.CommitBatch([Accept("d")]);
        var after = store.ReadOutbox(10);
        Assert.Equal(["d"], after.Select(e => e.JobId));
        Assert.Equal(1, store.OutboxCount);
    }

    [Fact]
    public void Finish_DiskFullThenSpaceReturns_RecordsTheOutcomeOnRetry()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);
        store.TakeNext();
        _disk.Full = true;

        Assert.ThrowsAny<IOException>(() => store.Finish("j1", JobStatuses.Succeeded, ResultEvent("j1")));
        _disk.Full = false;

        Assert.True(store.Finish("j1", JobStatuses.Succeeded, ResultEvent("j1")));
        Assert.Equal(ResultEvent("j1"), store.Get("j1")!.FinalEvent);
        Assert.Equal(JobStatuses.Succeeded, store.Get("j1")!.Status);
    }

    [Fact]
    public void Open_AfterDiskFullFailures_ReopensWithEverythingCommittedBefore()
    {
        using (var store = Open())
        {
            store.CommitBatch([Accept("j1"), Accept("j2")]);
            _disk.Full = true;
            Assert.ThrowsAny<IOException>(() => store.CommitBatch([Accept("j3")]));
        }

        _disk.Full = false;
        using var reopened = Open();

        Assert.Equal(2, reopened.CountQueued());
        Assert.Null(reopened.Get("j3"));
        Assert.Equal(["j1", "j2"], Drain(reopened));
    }

    private static List<string> Drain(JobStore store)
    {
        var ids = new List<string>();
        while (store.TakeNext() is { } job)
        {
            ids.Add(job.Id);
        }

        return ids;
    }

    private sealed class Disk
    {
        public volatile bool Full;
    }

    /// <summary>The log stream, failing every write with ENOSPC while the disk is "full" (like write(2) would).</summary>
    private sealed class FullableStream(Stream inner, Disk disk) : Stream
    {
        public override bool CanRead => inner.CanRead;

        public override bool CanSeek => inner.CanSeek;

        public override bool CanWrite => inner.CanWrite;

        public override long Length => inner.Length;

        public override long Position
        {
            get => inner.Position;
            set => inner.Position = value;
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

        public override void SetLength(long value)
        {
            if (disk.Full && value > inner.Length)
            {
                throw NoSpace();
            }

            inner.SetLength(value);
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            if (disk.Full)
            {
                throw NoSpace();
            }

            inner.Write(buffer, offset, count);
        }

        private static IOException NoSpace() => new("No space left on device", Enospc);
    }
}
