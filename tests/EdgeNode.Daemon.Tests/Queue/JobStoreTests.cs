using System.Diagnostics;
using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;
using Microsoft.Extensions.Logging;
using static EdgeNode.Daemon.Tests.Queue.Items;

namespace EdgeNode.Daemon.Tests.Queue;

public sealed class JobStoreTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly ManualTimeProvider _time = new(Start);
    private readonly ListLogger _log = new();

    public void Dispose() => _dir.Dispose();

    private JobStore Open() => JobStore.Open(_dir.Path, _time, _log);

    private static List<string> DrainIds(JobStore store)
    {
        var ids = new List<string>();
        while (store.TakeNext() is { } job)
        {
            ids.Add(job.Id);
        }

        return ids;
    }

    [Fact]
    public void Open_MissingNestedDirectory_CreatesItWithLockAndDatabase()
    {
        var nested = Path.Combine(_dir.Path, "var", "lib", "edgenode");

        using (var store = JobStore.Open(nested, _time, _log))
        {
            Assert.Equal(Path.Combine(nested, "jobs.db"), store.DatabasePath);
            Assert.Equal(Path.Combine(nested, "edgenode.lock"), store.LockPath);
            Assert.Null(store.QuarantinedTo);
        }

        Assert.True(File.Exists(Path.Combine(nested, "jobs.db")));
        Assert.True(File.Exists(Path.Combine(nested, "edgenode.lock")));
    }

    [Fact]
    public void CommitBatch_NewJob_IsAcceptedQueuedWithAcceptedEventInOutbox()
    {
        using var store = Open();
        var item = Accept(Job("j1"), correlation: [1, 2, 3]);

        var decisions = store.CommitBatch([item]);

        Assert.Equal([new IngestDecision(IngestDecisionKind.Accepted, "j1", null)], decisions);
        var record = store.Get("j1");
        Assert.NotNull(record);
        Assert.Equal(JobStatuses.Queued, record.Status);
        Assert.Equal(0, record.Attempts);
        Assert.Equal(Start, record.AcceptedAt);
        Assert.Equal("edgenode/results/j1", record.ReplyTopic);
        Assert.Equal(new byte[] { 1, 2, 3 }, record.CorrelationData);
        Assert.Equal(1, store.CountQueued());
        var outbox = Assert.Single(store.ReadOutbox(10));
        Assert.Equal("j1", outbox.JobId);
        Assert.Equal("edgenode/results/j1", outbox.Topic);
        Assert.Equal(new byte[] { 1, 2, 3 }, outbox.CorrelationData);
        Assert.Equal(item.EventPayload, outbox.Payload);
    }

    [Fact]
    public void CommitBatch_KnownId_IsDuplicateWithStoredRecordAndWritesNothing()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);
        var outboxBefore = store.ReadOutbox(10).Count;

        var decisions = store.CommitBatch([Accept(Job("j1", prompt: "a different prompt"))]);

        var decision = Assert.Single(decisions);
        Assert.Equal(IngestDecisionKind.Duplicate, decision.Kind);
        Assert.NotNull(decision.Existing);
        Assert.Equal("Hello, my name is", decision.Existing.Request.Prompt);
        Assert.Equal(JobStatuses.Queued, decision.Existing.Status);
        Assert.Equal(outboxBefore, store.ReadOutbox(10).Count);
        Assert.Equal(1, store.CountQueued());
    }

    [Fact]
    public void CommitBatch_FinishedKnownId_DuplicateCarriesStoredFinalEvent()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);
        store.TakeNext();
        store.Finish("j1", JobStatuses.Succeeded, ResultEvent("j1"));

        var decision = Assert.Single(store.CommitBatch([Accept("j1")]));

        Assert.Equal(IngestDecisionKind.Duplicate, decision.Kind);
        Assert.Equal(JobStatuses.Succeeded, decision.Existing!.Status);
        Assert.Equal(ResultEvent("j1"), decision.Existing.FinalEvent);
    }

    [Fact]
    public void CommitBatch_SameIdTwiceInOneBatch_SecondIsDuplicate()
    {
        using var store = Open();

        var decisions = store.CommitBatch([Accept("j1"), Accept("j2"), Accept("j1")]);

        Assert.Equal(
            [IngestDecisionKind.Accepted, IngestDecisionKind.Accepted, IngestDecisionKind.Duplicate],
            decisions.Select(d => d.Kind));
        Assert.Equal("j1", decisions[2].Existing!.Id);
        Assert.Equal(2, store.CountQueued());
        Assert.Equal(2, store.ReadOutbox(10).Count);
    }

    /// <summary>A known id in a batch of new ones: the first, optimistic attempt (no per-id lookup) hits LiteDB's duplicate key and
    /// is rolled back whole; the batch is committed again with lookups. Nothing of the rolled-back attempt may remain:
    /// no sequence number skipped or used twice, the memory outbox equal to the stored one, counts exact.</summary>
    [Fact]
    public void CommitBatch_KnownIdAmongNewOnes_NewOnesAcceptedInOrderWithConsecutiveSequenceNumbers()
    {
        IReadOnlyList<OutboxEntry> inMemory;
        using (var store = Open())
        {
            store.CommitBatch([Accept("j1")]);

            var decisions = store.CommitBatch([Accept("j2"), Accept("j1"), Reject("bad-1"), Accept("j3"), Accept("j3")]);

            Assert.Equal(
                [IngestDecisionKind.Accepted, IngestDecisionKind.Duplicate, IngestDecisionKind.Rejected, IngestDecisionKind.Accepted, IngestDecisionKind.Duplicate],
                decisions.Select(d => d.Kind));
            Assert.Equal(3, store.CountQueued());
            inMemory = store.ReadOutbox(10);
            Assert.Equal(["j1", "j2", "bad-1", "j3"], inMemory.Select(e => e.JobId));
            Assert.Equal(Enumerable.Range((int)inMemory[0].Seq, 4).Select(i => (long)i), inMemory.Select(e => e.Seq));
            Assert.Equal(store.Get("j2")!.Seq + 1, store.Get("j3")!.Seq);
        }

        using var reopened = Open();
        Assert.Equal([false, false, true, false], inMemory.Select(e => e.Durable));
        Assert.Equal(inMemory.Where(e => e.Durable).Select(e => (e.Seq, e.JobId)), reopened.ReadOutbox(10).Select(e => (e.Seq, e.JobId)));
        Assert.Equal(3, reopened.CountQueued());
        Assert.Equal(["j1", "j2", "j3"], DrainIds(reopened));
    }

    [Fact]
    public void CommitBatch_RejectedItem_PutsOnlyItsErrorEventInOutbox()
    {
        using var store = Open();
        var rejected = Reject("bad-1");

        var decisions = store.CommitBatch([rejected, Accept("j1")]);

        Assert.Equal([IngestDecisionKind.Rejected, IngestDecisionKind.Accepted], decisions.Select(d => d.Kind));
        Assert.Null(store.Get("bad-1"));
        Assert.Equal(1, store.CountQueued());
        var outbox = store.ReadOutbox(10);
        Assert.Equal(["bad-1", "j1"], outbox.Select(e => e.JobId));
        Assert.Equal(rejected.EventPayload, outbox[0].Payload);
        Assert.Equal("edgenode/results/bad-1", outbox[0].Topic);
    }

    [Fact]
    public void CommitBatch_RetryOfBatchThatCommitted_IsDecidedByIdAndCreatesNoSecondJob()
    {
        // cases/durability.md 9: an insert that threw may have committed; the retry must not make a second job.
        var batch = new[] { Accept("j1"), Accept("j2") };
        using (var store = Open())
        {
            store.CommitBatch(batch);
        }

        using var reopened = Open();
        var decisions = reopened.CommitBatch(batch);

        Assert.All(decisions, d => Assert.Equal(IngestDecisionKind.Duplicate, d.Kind));
        Assert.Equal(2, reopened.CountQueued());
        Assert.Equal(["j1", "j2"], DrainIds(reopened));
        Assert.Empty(reopened.ReadOutbox(10)); // the retry wrote no event (the accepted events were in memory only)
    }

    [Fact]
    public void CommitBatch_IdsDifferingOnlyInCase_AreDistinctJobs()
    {
        // LiteDB's default collation ignores case; the store must not.
        using var store = Open();

        var decisions = store.CommitBatch([Accept("Job-1"), Accept("job-1")]);

        Assert.All(decisions, d => Assert.Equal(IngestDecisionKind.Accepted, d.Kind));
        Assert.Equal("Job-1", store.Get("Job-1")!.Id);
        Assert.Equal("job-1", store.Get("job-1")!.Id);
        Assert.Null(store.Get("JOB-1"));
    }

    [Fact]
    public void CommitBatch_JobIdDiffersFromJobRequestId_Throws()
    {
        using var store = Open();
        var item = Accept("j1") with { JobId = "other" };

        Assert.Throws<ArgumentException>(() => store.CommitBatch([item]));
        Assert.Equal(0, store.CountQueued());
    }

    [Fact]
    public void CommitBatch_ThousandItemsInOneCall_AreAllCommittedInOrder()
    {
        using var store = Open();
        var items = Enumerable.Range(0, 1000).Select(i => Accept($"job-{i:D4}")).ToList();

        var decisions = store.CommitBatch(items);

        Assert.Equal(1000, decisions.Count);
        Assert.All(decisions, d => Assert.Equal(IngestDecisionKind.Accepted, d.Kind));
        Assert.Equal(items.Select(i => i.JobId), decisions.Select(d => d.JobId));
        Assert.Equal(1000, store.CountQueued());
        Assert.Equal(items.Select(i => i.JobId), store.ReadOutbox(2000).Select(e => e.JobId));
        Assert.Equal(items.Select(i => i.JobId), DrainIds(store));
    }

    [Fact]
    public void TakeNext_MixedPriorities_ReturnsHighestPriorityFirstThenFifo()
    {
        using var store = Open();
        store.CommitBatch([Accept("a0", 0), Accept("b5", 5), Accept("c0", 0), Accept("d-100", -100)]);
        store.CommitBatch([Accept("e100", 100), Accept("f5", 5), Accept("g0", 0)]);

        Assert.Equal(["e100", "b5", "f5", "a0", "c0", "g0", "d-100"], DrainIds(store));
    }

    [Fact]
    public void TakeNext_EmptyQueue_ReturnsNull()
    {
        using var store = Open();

        Assert.Null(store.TakeNext());
    }

    [Fact]
    public void TakeNext_Job_IsMarkedInProgressWithOneAttemptAndLeavesTheQueue()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);
        _time.Now = Start.AddSeconds(3);

        var job = store.TakeNext();

        Assert.NotNull(job);
        Assert.Equal(JobStatuses.InProgress, job.Status);
        Assert.Equal(1, job.Attempts);
        Assert.Equal(Start.AddSeconds(3), job.StartedAt);
        Assert.Equal(JobStatuses.InProgress, store.Get("j1")!.Status);
        Assert.Equal(0, store.CountQueued());
        Assert.Null(store.TakeNext());
    }

    [Fact]
    public void TakeNext_OrderAfterReopen_IsUnchangedAndNewJobsQueueBehind()
    {
        using (var store = Open())
        {
            store.CommitBatch([Accept("a1", 1), Accept("b0", 0), Accept("c1", 1)]);
        }

        using var reopened = Open();
        reopened.CommitBatch([Accept("d1", 1), Accept("e0", 0)]);

        Assert.Equal(3 + 2, reopened.CountQueued());
        Assert.Equal(["a1", "c1", "d1", "b0", "e0"], DrainIds(reopened));
        Assert.True(reopened.Get("d1")!.Seq > reopened.Get("c1")!.Seq);
    }

    [Fact]
    public void ReadOutbox_EntriesInSeqOrder_MarkDeliveredRemovesOnlyThatEntry()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1"), Reject("r1"), Accept("j2")]);
        store.TakeNext();
        store.Finish("j1", JobStatuses.Succeeded, ResultEvent("j1"));

        var outbox = store.ReadOutbox(10);
        Assert.Equal(["j1", "r1", "j2", "j1"], outbox.Select(e => e.JobId));
        Assert.Equal(outbox.Select(e => e.Seq).Order(), outbox.Select(e => e.Seq));
        Assert.Equal(ResultEvent("j1"), outbox[3].Payload);

        store.MarkDelivered(outbox[1].Seq);
        store.MarkDelivered(outbox[1].Seq); // repeated PUBACK handling is harmless

        Assert.Equal(["j1", "j2", "j1"], store.ReadOutbox(10).Select(e => e.JobId));
        Assert.Equal(3, store.OutboxCount);
        Assert.Equal(["j1", "j2"], store.ReadOutbox(2).Select(e => e.JobId));
    }

    [Fact]
    public void MarkDelivered_BatchOfSeqs_RemovesExactlyThoseInOneCall()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1"), Reject("r1"), Accept("j2"), Accept("j3")]);
        var outbox = store.ReadOutbox(10);

        store.MarkDelivered([outbox[2].Seq, outbox[0].Seq, outbox[0].Seq, 999_999]); // repeats and unknown seqs are ignored
        store.MarkDelivered([]);

        Assert.Equal(["r1", "j3"], store.ReadOutbox(10).Select(e => e.JobId));
        Assert.Equal(2, store.OutboxCount);
    }

    [Fact]
    public void ReadOutbox_AfterReopen_KeepsUndeliveredEntriesAndSeqKeepsIncreasing()
    {
        long lastSeq;
        using (var store = Open())
        {
            store.CommitBatch([Reject("j1"), Reject("j2")]); // outcomes: durable outbox entries
            var outbox = store.ReadOutbox(10);
            store.MarkDelivered(outbox[0].Seq);
            lastSeq = outbox[1].Seq;
        }

        using var reopened = Open();
        reopened.CommitBatch([Reject("j3")]);

        var entries = reopened.ReadOutbox(10);
        Assert.Equal(["j2", "j3"], entries.Select(e => e.JobId));
        Assert.Equal(lastSeq, entries[0].Seq);
        Assert.True(entries[1].Seq > lastSeq);
    }

    [Fact]
    public void CommitBatch_WhileMirrored_AcceptedEventsGoOutInOrderAfterTheFsyncButAreNotWrittenToLiteDb()
    {
        // DESIGN.md §4.2 makes outcomes durable; an accepted event is kept in memory only (a third of each commit's
        // pages before, docs/BENCHMARKS.md "Ingest"). The job itself is committed as before.
        using (var store = Open())
        {
            store.CommitBatch([Accept("j1"), Reject("bad"), Accept("j2")]);

            var entries = store.ReadOutbox(10);
            Assert.Equal(["j1", "bad", "j2"], entries.Select(e => e.JobId));
            Assert.Equal([false, true, false], entries.Select(e => e.Durable));
            Assert.Equal(JobEvents.Accepted("j1", "local", Node), entries[0].Payload);
            Assert.All(entries, e => Assert.True(e.Seq <= store.DurableOutboxSeq));
            Assert.Equal(3, store.OutboxCount);
            store.MarkDelivered([entries[0].Seq]);
            Assert.Equal(2, store.OutboxCount);
        }

        using var reopened = Open();
        Assert.Equal(["bad"], reopened.ReadOutbox(10).Select(e => e.JobId));
        Assert.Equal(1, reopened.OutboxCount);
        Assert.Equal(JobStatuses.Queued, reopened.Get("j2")!.Status);
        Assert.Equal(2, reopened.CountQueued());
    }

    [Fact]
    public void CommitBatch_WhileOutboxIsReadFromLiteDb_AcceptedEventsAreWrittenAndFollowTheUndeliveredOutcomes()
    {
        using (var store = Open())
        {
            store.CommitBatch([Reject("old")]); // undelivered when the process stops
        }

        using (var reopened = Open()) // one undelivered entry in the file: the outbox is not mirrored until it drains
        {
            reopened.CommitBatch([Accept("new")]);

            var entries = reopened.ReadOutbox(10);
            Assert.Equal(["old", "new"], entries.Select(e => e.JobId));
            Assert.All(entries, e => Assert.True(e.Durable));
        }

        using var again = Open();
        Assert.Equal(["old", "new"], again.ReadOutbox(10).Select(e => e.JobId));
    }

    [Fact]
    public void Finish_ThenReopen_KeepsStatusAndByteIdenticalFinalEvent()
    {
        var final = ResultEvent("j1");
        using (var store = Open())
        {
            store.CommitBatch([Accept(Job("j1"), correlation: [9])]);
            store.TakeNext();
            _time.Now = Start.AddSeconds(10);
            Assert.True(store.Finish("j1", JobStatuses.Succeeded, final));
        }

        using var reopened = Open();
        var record = reopened.Get("j1");

        Assert.NotNull(record);
        Assert.Equal(JobStatuses.Succeeded, record.Status);
        Assert.True(record.IsFinal);
        Assert.Equal(final, record.FinalEvent);
        Assert.Equal(Start.AddSeconds(10), record.FinishedAt);
        var entry = reopened.ReadOutbox(10)[^1];
        Assert.Equal(final, entry.Payload);
        Assert.Equal("edgenode/results/j1", entry.Topic);
        Assert.Equal(new byte[] { 9 }, entry.CorrelationData);
        Assert.Equal(0, reopened.RequeueInterrupted());
    }

    [Fact]
    public void Finish_JobAlreadyFinal_KeepsFirstOutcomeAndReturnsFalse()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);
        store.TakeNext();
        var canceled = JobEvents.Error("j1", JobStatuses.Canceled, JobErrorCodes.Canceled, "canceled by the device");
        store.Finish("j1", JobStatuses.Canceled, canceled);
        var outboxCount = store.OutboxCount;

        var recorded = store.Finish("j1", JobStatuses.Succeeded, ResultEvent("j1"));

        Assert.False(recorded);
        Assert.Equal(JobStatuses.Canceled, store.Get("j1")!.Status);
        Assert.Equal(canceled, store.Get("j1")!.FinalEvent);
        Assert.Equal(outboxCount, store.OutboxCount);
    }

    [Fact]
    public void Finish_QueuedJob_LeavesTheQueueWithoutRunning()
    {
        using var store = Open();
        store.CommitBatch([Accept("expired"), Accept("next")]);
        var timedOut = JobEvents.Error("expired", JobStatuses.TimedOut, JobErrorCodes.DeadlineExceeded, "deadline_ms 200 passed before it ran");

        Assert.True(store.Finish("expired", JobStatuses.TimedOut, timedOut));

        Assert.Equal(1, store.CountQueued());
        Assert.Equal("next".Length + "Hello, my name is".Length, store.QueuedBytes);
        Assert.Equal(["next"], DrainIds(store));
        Assert.Equal(0, store.Get("expired")!.Attempts);
    }

    [Theory]
    [InlineData(JobStatuses.Queued)]
    [InlineData(JobStatuses.InProgress)]
    [InlineData(JobStatuses.Offloaded)]
    public void Finish_NonFinalStatus_Throws(string status)
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);

        Assert.Throws<ArgumentException>(() => store.Finish("j1", status, ResultEvent("j1")));
        Assert.Equal(JobStatuses.Queued, store.Get("j1")!.Status);
    }

    [Fact]
    public void Finish_UnknownJob_Throws()
    {
        using var store = Open();

        Assert.Throws<InvalidOperationException>(() => store.Finish("nope", JobStatuses.Failed, ResultEvent("nope")));
    }

    [Fact]
    public void RequeueInterrupted_AfterCrashMidJob_RequeuesAtOriginalPlaceKeepingAttempts()
    {
        using (var store = Open())
        {
            store.CommitBatch([Accept("first"), Accept("second"), Accept("third")]);
            Assert.Equal("first", store.TakeNext()!.Id);
            // "crash": the process goes away without finishing the job.
        }

        using var reopened = Open();
        Assert.Equal(JobStatuses.InProgress, reopened.Get("first")!.Status);

        var requeued = reopened.RequeueInterrupted();

        Assert.Equal(1, requeued);
        Assert.Equal(JobStatuses.Queued, reopened.Get("first")!.Status);
        Assert.Equal(3, reopened.CountQueued());
        Assert.Equal(("first" + "second" + "third").Length + (3 * "Hello, my name is".Length), reopened.QueuedBytes);
        var again = reopened.TakeNext();
        Assert.Equal("first", again!.Id);
        Assert.Equal(2, again.Attempts);
        Assert.Contains(_log.Entries, e => e.Id.Id == 1102 && e.Message.Contains("Re-queued 1 jobs", StringComparison.Ordinal));
    }

    [Fact]
    public void RequeueInterrupted_RepeatedCrashes_CountEveryAttempt()
    {
        for (var crash = 1; crash <= 3; crash++)
        {
            using var store = Open();
            if (crash == 1)
            {
                store.CommitBatch([Accept("poison")]);
            }

            store.RequeueInterrupted();
            Assert.Equal(crash, store.TakeNext()!.Attempts);
        }
    }

    [Fact]
    public void RequeueInterrupted_JobTakenByThisInstance_IsLeftRunning()
    {
        using var store = Open();
        store.CommitBatch([Accept("running")]);
        store.TakeNext();

        Assert.Equal(0, store.RequeueInterrupted());
        Assert.Null(store.TakeNext());
        Assert.Equal(JobStatuses.InProgress, store.Get("running")!.Status);
    }

    [Fact]
    public void Open_SecondOpenOnSameDirectory_ThrowsStoreLockedNamingLockFileAndFirstKeepsWorking()
    {
        using var first = Open();
        first.CommitBatch([Accept("j1")]);

        var ex = Assert.Throws<StoreLockedException>(() => Open());

        var lockPath = Path.Combine(_dir.Path, "edgenode.lock");
        Assert.Equal(lockPath, ex.LockPath);
        Assert.Contains(lockPath, ex.Message, StringComparison.Ordinal);
        first.CommitBatch([Accept("j2")]);
        Assert.Equal(["j1", "j2"], DrainIds(first));
    }

    [Fact]
    public void Open_LockHeld_IsAnOsLockThatAnotherProcessCannotTake()
    {
        // flock(1) takes the same advisory flock(2) lock from a separate process (cases/durability.md 2 and 8).
        var lockPath = Path.Combine(_dir.Path, "edgenode.lock");
        using (var store = Open())
        {
            Assert.Equal(1, RunFlock(lockPath));
            Assert.Equal(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n", ReadWithCat(lockPath));
        }

        Assert.Equal(0, RunFlock(lockPath));
    }

    [Fact]
    public void Dispose_ReleasesLock_SoTheDirectoryCanBeOpenedAgain()
    {
        var store = Open();
        store.Dispose();
        store.Dispose(); // idempotent

        using var again = Open();
        Assert.Throws<ObjectDisposedException>(() => store.CountQueued());
    }

    [Fact]
    public void Get_AcceptedJob_RoundTripsEveryRequestField()
    {
        var job = new JobRequest
        {
            Id = "full",
            IdAssigned = true,
            Prompt = "Prompt ✓ with ünïcode",
            MaxNewTokens = 77,
            Temperature = 0.3f,
            TopK = 5,
            TopP = 0.5f,
            RepetitionPenalty = 1.2f,
            Seed = long.MinValue,
            Stop = ["\n\n", "END"],
            Stream = true,
            DeadlineMs = 1234,
            Priority = -42,
            ReplyTo = "dev/1/out",
        };
        using (var store = Open())
        {
            store.CommitBatch([Accept(job)]);
        }

        using var reopened = Open();
        var stored = reopened.Get("full")!.Request;

        Assert.Equal(job with { Stop = stored.Stop }, stored);
        Assert.Equal(job.Stop, stored.Stop);
        Assert.Equal(Start.AddMilliseconds(1234), reopened.Get("full")!.Deadline);
    }

    [Fact]
    public void Get_JobWithoutOptionalFields_RoundTripsNulls()
    {
        using var store = Open();
        store.CommitBatch([Accept("plain")]);

        var record = store.Get("plain")!;

        Assert.Null(record.Request.Seed);
        Assert.Null(record.Request.DeadlineMs);
        Assert.Null(record.Request.ReplyTo);
        Assert.Empty(record.Request.Stop);
        Assert.Null(record.CorrelationData);
        Assert.Null(record.Deadline);
        Assert.Null(record.FinalEvent);
    }

    [Fact]
    public void QueuedBytes_TracksIdsPromptsAndStopsOfQueuedJobsOnly()
    {
        using var store = Open();
        store.CommitBatch([Accept(Job("ab", prompt: "héllo") with { Stop = ["x"] }), Accept(Job("cd", prompt: "1234"))]);

        Assert.Equal(2 + 6 + 1 + 2 + 4, store.QueuedBytes);
        store.TakeNext();
        Assert.Equal(2 + 4, store.QueuedBytes);
    }

    [Fact]
    public void PurgeFinished_RemovesOnlyJobsFinishedBeforeTheCutoff()
    {
        using var store = Open();
        store.CommitBatch([Accept("old"), Accept("recent"), Accept("queued")]);
        store.TakeNext();
        store.Finish("old", JobStatuses.Succeeded, ResultEvent("old"));
        _time.Now = Start.AddHours(2);
        store.TakeNext();
        store.Finish("recent", JobStatuses.Succeeded, ResultEvent("recent"));

        var purged = store.PurgeFinished(Start.AddHours(1), max: 100);

        Assert.Equal(1, purged);
        Assert.Null(store.Get("old"));
        Assert.NotNull(store.Get("recent"));
        Assert.NotNull(store.Get("queued"));
        Assert.Equal(IngestDecisionKind.Accepted, store.CommitBatch([Accept("old")])[0].Kind);
    }

    [Fact]
    public void CommitBatch_ManyCommitsWithoutBackgroundCheckpoint_LogGrowsPastLiteDbDefaultButStaysUnderHardBound()
    {
        using var store = Open();
        const long LiteDbAutoCheckpointBytes = 1_000 * 8192; // LiteDB's CHECKPOINT pragma default, now off
        var largest = 0L;
        var truncated = false;
        for (var batch = 0; batch < 3_000 && !truncated; batch++)
        {
            var before = store.LogBytes;
            store.CommitBatch([.. Enumerable.Range(0, 20).Select(i => Accept($"b{batch}-{i}"))]);
            var after = store.LogBytes;
            Assert.True(after <= JobStore.MaxLogBytes, $"log {after} bytes after commit {batch}, bound {JobStore.MaxLogBytes}");
            largest = Math.Max(largest, after);
            truncated = after < before;
        }

        Assert.True(truncated, "the hard bound never checkpointed the log");
        Assert.True(largest > LiteDbAutoCheckpointBytes, $"the log peaked at {largest} bytes: LiteDB's auto-checkpoint still ran");
        Assert.NotNull(store.Get("b0-0"));
    }

    [Fact]
    public void CheckpointIfLogOver_LogOverTheSize_CheckpointsOnlyThen()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);
        var size = store.LogBytes;
        Assert.True(size > 0);

        Assert.False(store.CheckpointIfLogOver(size));
        Assert.Equal(size, store.LogBytes);
        Assert.True(store.CheckpointIfLogOver(size - 1));
        Assert.Equal(0, store.LogBytes);
        Assert.Equal(JobStatuses.Queued, store.Get("j1")!.Status);
    }

    [Fact]
    public void Checkpoint_AfterWrites_KeepsDataAndEmptiesLog()
    {
        using var store = Open();
        store.CommitBatch([Accept("j1")]);

        store.Checkpoint();

        var log = Path.Combine(_dir.Path, "jobs-log.db");
        Assert.True(!File.Exists(log) || new FileInfo(log).Length == 0);
        Assert.Equal(JobStatuses.Queued, store.Get("j1")!.Status);
    }

    [Fact]
    public async Task Store_IngestExecutorAndPublisherThreadsAtOnce_EveryJobFinishesOnceAndOutboxDrains()
    {
        // The daemon's shape: one ingest loop, one executor, one publisher, each on its own thread.
        const int Batches = 40;
        const int BatchSize = 10;
        using var store = Open();
        using var done = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var finished = new System.Collections.Concurrent.ConcurrentBag<string>();
        var published = 0;

        var ingest = Task.Factory.StartNew(() =>
        {
            for (var b = 0; b < Batches; b++)
            {
                var decisions = store.CommitBatch([.. Enumerable.Range(0, BatchSize).Select(i => Accept($"b{b}-{i}", priority: i % 3))]);
                Assert.All(decisions, d => Assert.Equal(IngestDecisionKind.Accepted, d.Kind));
            }
        }, TaskCreationOptions.LongRunning);
        _ = ingest.ContinueWith(_ => done.Cancel(), CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);

        var executor = Task.Factory.StartNew(() =>
        {
            while (finished.Count < Batches * BatchSize)
            {
                done.Token.ThrowIfCancellationRequested();
                if (store.TakeNext() is { } job)
                {
                    Assert.True(store.Finish(job.Id, JobStatuses.Succeeded, ResultEvent(job.Id)));
                    finished.Add(job.Id);
                }
                else
                {
                    Thread.Yield();
                }
            }
        }, TaskCreationOptions.LongRunning);

        var publisher = Task.Factory.StartNew(() =>
        {
            // every job has two events: accepted and result
            while (Volatile.Read(ref published) < 2 * Batches * BatchSize)
            {
                done.Token.ThrowIfCancellationRequested();
                var entries = store.ReadOutbox(64);
                foreach (var entry in entries)
                {
                    store.MarkDelivered(entry.Seq);
                    Interlocked.Increment(ref published);
                }

                if (entries.Count == 0)
                {
                    Thread.Yield();
                }
            }
        }, TaskCreationOptions.LongRunning);

        await Task.WhenAll(ingest, executor, publisher);

        Assert.Equal(Batches * BatchSize, finished.Distinct().Count());
        Assert.Equal(0, store.CountQueued());
        Assert.Equal(0, store.OutboxCount);
        Assert.Empty(store.ReadOutbox(10));
        Assert.Equal(0, store.RequeueInterrupted());
    }

    private static int RunFlock(string path)
    {
        using var process = Process.Start(new ProcessStartInfo("flock", ["--nonblock", path, "true"])
        {
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "flock did not exit");
        return process.ExitCode;
    }

    /// <summary>cat(1) does not lock, so it reads the pid even while this process holds the flock.</summary>
    private static string ReadWithCat(string path)
    {
        using var process = Process.Start(new ProcessStartInfo("cat", [path])
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        })!;
        var text = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "cat did not exit");
        return text;
    }
}
