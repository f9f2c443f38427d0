using EdgeNode.Daemon.Queue;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;
using Microsoft.Extensions.Logging;
using static EdgeNode.Daemon.Tests.Queue.Items;

namespace EdgeNode.Daemon.Tests.Queue;

/// <summary>
/// Crash images and corrupt files (cases/durability.md 1, 3, 7). A "crash image" is a copy of the state directory
/// taken while the store is open: LiteDB has written every commit to the OS, but nothing was checkpointed or closed,
/// which is what the disk holds after a SIGKILL.
/// </summary>
public sealed class JobStoreRecoveryTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly TempDirectory _crashImage = new();
    private readonly ManualTimeProvider _time = new(Start);
    private readonly ListLogger _log = new();

    public void Dispose()
    {
        _dir.Dispose();
        _crashImage.Dispose();
    }

    private JobStore Open(string? directory = null) => JobStore.Open(directory ?? _dir.Path, _time, _log);

    private void CopyCrashImage()
    {
        foreach (var file in Directory.EnumerateFiles(_dir.Path))
        {
            var name = Path.GetFileName(file);
            if (name != JobStore.LockFileName)
            {
                File.Copy(file, Path.Combine(_crashImage.Path, name));
            }
        }
    }

    [Fact]
    public void Open_CrashImageWithUncheckpointedLog_HasEveryCommittedJobAndOutcome()
    {
        using (var store = Open())
        {
            store.CommitBatch([.. Enumerable.Range(0, 20).Select(i => Accept($"j{i:D2}"))]);
            store.TakeNext();
            store.Finish("j00", JobStatuses.Succeeded, ResultEvent("j00"));
            store.TakeNext(); // j01 is running when the process "dies"
            Assert.True(new FileInfo(Path.Combine(_dir.Path, JobStore.LogFileName)).Length > 0);
            CopyCrashImage();
        }

        using var recovered = Open(_crashImage.Path);

        Assert.Equal(1, recovered.RequeueInterrupted());
        Assert.Equal(ResultEvent("j00"), recovered.Get("j00")!.FinalEvent);
        Assert.Equal(19, recovered.CountQueued());
        var next = recovered.TakeNext()!;
        Assert.Equal("j01", next.Id);
        Assert.Equal(2, next.Attempts);
        // The outcome is durable; the 20 accepted events lived in memory only (JobStore remarks, DESIGN.md §4.2).
        Assert.Equal(["j00"], recovered.ReadOutbox(100).Select(e => e.JobId));
        Assert.Equal(ResultEvent("j00"), recovered.ReadOutbox(100)[0].Payload);
    }

    [Fact]
    public void Open_CrashImage_OutboxRepublishesByteIdenticalEvents()
    {
        byte[] final = ResultEvent("j1");
        using (var store = Open())
        {
            store.CommitBatch([Accept("j1")]);
            store.TakeNext();
            store.Finish("j1", JobStatuses.Succeeded, final);
            var entries = store.ReadOutbox(10);
            store.MarkDelivered(entries[0].Seq); // the accepted event was delivered, the result not yet
            store.FlushDelivered(); // its deletion written (deferred until then: see the next test)
            CopyCrashImage();
        }

        using var recovered = Open(_crashImage.Path);

        var entry = Assert.Single(recovered.ReadOutbox(10));
        Assert.Equal(final, entry.Payload);
        Assert.Equal(final, recovered.Get("j1")!.FinalEvent);
    }

    [Fact]
    public void Open_CrashImageBeforeDeferredDeletion_DeliveredEventsRepublishedByteIdentical()
    {
        using (var store = Open())
        {
            store.CommitBatch([Reject("j1"), Reject("j2")]); // outcomes: durable outbox entries
            var entries = store.ReadOutbox(10);
            store.MarkDelivered([.. entries.Select(e => e.Seq)]);
            Assert.Empty(store.ReadOutbox(10)); // reported delivered: never handed out again by this process
            CopyCrashImage(); // the process dies before the deletion was written
        }

        using var recovered = Open(_crashImage.Path);

        // DESIGN.md §4.2: after a crash an event may be published again, always byte-identical.
        var again = recovered.ReadOutbox(10);
        Assert.Equal(["j1", "j2"], again.Select(e => e.JobId));
        Assert.Equal(Reject("j1").EventPayload, again[0].Payload);
    }

    [Fact]
    public void CommitBatch_AfterMarkDelivered_WritesTheDeferredDeletionInItsTransaction()
    {
        using (var store = Open())
        {
            store.CommitBatch([Reject("j1")]);
            store.MarkDelivered(store.ReadOutbox(10)[0].Seq);
            store.CommitBatch([Reject("j2")]); // carries the deletion of j1's delivered event
            CopyCrashImage();
        }

        using var recovered = Open(_crashImage.Path);

        Assert.Equal(["j2"], recovered.ReadOutbox(10).Select(e => e.JobId));
        Assert.Equal(1, recovered.OutboxCount);
    }

    [Fact]
    public void Open_CrashImageWithinReservedSeqBlock_NumbersStillIncrease()
    {
        long lastJobSeq;
        long lastOutboxSeq;
        using (var store = Open())
        {
            for (var i = 0; i < 5; i++)
            {
                store.CommitBatch([Accept($"j{i}")]); // the first reserves a block in meta, the others write no meta
            }

            lastJobSeq = store.Get("j4")!.Seq;
            lastOutboxSeq = store.ReadOutbox(10)[^1].Seq;
            CopyCrashImage();
        }

        using var recovered = Open(_crashImage.Path);
        recovered.CommitBatch([Accept("k")]);

        Assert.True(recovered.Get("k")!.Seq > lastJobSeq);
        Assert.True(recovered.ReadOutbox(10)[^1].Seq > lastOutboxSeq);
        Assert.Equal(["k"], recovered.ReadOutbox(10).Select(e => e.JobId)); // j0-j4's accepted events were in memory only
    }

    public static TheoryData<string> Corruptions() => ["truncate-to-half", "truncate-finished-jobs", "zero-middle-page", "garbage-header"];

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void Open_CorruptDatabase_MovesFilesAsideLogsAndServesNewJobs(string corruption)
    {
        using (var store = Open())
        {
            store.CommitBatch([.. Enumerable.Range(0, 20).Select(i => Accept($"j{i}"))]);
            if (corruption == "truncate-finished-jobs")
            {
                // Only finished jobs and delivered events: nothing LoadState reads lives in the pages cut off
                // (the newcomer's case: the node opened it, then failed at the first insert on every start).
                // Then a few large finished jobs: their data pages are the file's last pages.
                store.CommitBatch([.. Enumerable.Range(0, 4).Select(i => Accept(Job($"big{i}", prompt: new string('x', 30_000))))]);
                while (store.TakeNext() is { } job)
                {
                    store.Finish(job.Id, JobStatuses.Succeeded, ResultEvent(job.Id));
                }

                foreach (var entry in store.ReadOutbox(1000))
                {
                    store.MarkDelivered(entry.Seq);
                }
            }
        }

        var path = Path.Combine(_dir.Path, JobStore.DatabaseFileName);
        var bytes = File.ReadAllBytes(path);
        var original = bytes.ToArray();
        switch (corruption)
        {
            case "truncate-to-half":
                bytes = bytes[..(bytes.Length / 2)];
                break;
            case "truncate-finished-jobs":
                bytes = bytes[..(bytes.Length - (2 * 8192))]; // the last two pages (big jobs' data), on a page boundary
                break;
            case "zero-middle-page":
                bytes.AsSpan((bytes.Length / 2) - 4096, 8192).Clear();
                break;
            default:
                new Random(7).NextBytes(bytes.AsSpan(0, 8192));
                break;
        }

        File.WriteAllBytes(path, bytes);

        using var reopened = Open();

        Assert.NotNull(reopened.QuarantinedTo);
        Assert.StartsWith(Path.Combine(_dir.Path, "quarantine", "jobs-20250301T120000000Z"), reopened.QuarantinedTo, StringComparison.Ordinal);
        // LiteDB flags a corrupt file (header byte 191) before throwing, so compare lengths, not bytes.
        Assert.Equal(bytes.Length, new FileInfo(Path.Combine(reopened.QuarantinedTo, JobStore.DatabaseFileName)).Length);
        Assert.NotEqual(original, bytes);
        Assert.Contains(_log.Entries, e => e.Level == LogLevel.Error && e.Id.Id == 1101 && e.Exception is not null);
        Assert.Equal(0, reopened.CountQueued());
        Assert.Equal(IngestDecisionKind.Accepted, reopened.CommitBatch([Accept("after")])[0].Kind);
        Assert.Equal("after", reopened.TakeNext()!.Id);
    }

    [Fact]
    public void Open_CorruptDatabaseWithLog_MovesDataAndLogTogether()
    {
        using (var store = Open())
        {
            store.CommitBatch([Accept("j1")]);
            CopyCrashImage();
        }

        var data = Path.Combine(_crashImage.Path, JobStore.DatabaseFileName);
        var bytes = File.ReadAllBytes(data);
        new Random(7).NextBytes(bytes.AsSpan(0, 8192));
        File.WriteAllBytes(data, bytes);

        using var reopened = Open(_crashImage.Path);

        Assert.NotNull(reopened.QuarantinedTo);
        Assert.True(File.Exists(Path.Combine(reopened.QuarantinedTo, JobStore.DatabaseFileName)));
        Assert.True(File.Exists(Path.Combine(reopened.QuarantinedTo, JobStore.LogFileName)));
        Assert.Null(reopened.Get("j1"));
    }

    [Fact]
    public void Open_AfterQuarantine_NextOpenIsNormal()
    {
        using (var store = Open())
        {
            store.CommitBatch([Accept("j1")]);
        }

        var path = Path.Combine(_dir.Path, JobStore.DatabaseFileName);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..8192]);
        using (var quarantined = Open())
        {
            Assert.NotNull(quarantined.QuarantinedTo);
            quarantined.CommitBatch([Accept("j2")]);
        }

        using var normal = Open();

        Assert.Null(normal.QuarantinedTo);
        Assert.Equal(["j2"], new[] { normal.TakeNext()!.Id });
    }

    /// <summary>
    /// The newcomer's kind of fault: a page in the middle of the file that start-up does not read (the data page with
    /// finished jobs' documents, read only to answer a resubmitted id) is overwritten. Resubmitting a stored id meets
    /// it ("Page type must be data page", LiteDB code 999). Before runtime quarantine every later call failed the same
    /// way and a daemon's stop hung on LiteDB's lock; now that call fails, the file is moved aside and the next calls
    /// work on an empty store.
    /// </summary>
    [Fact]
    public async Task CommitBatch_CorruptionFoundAtRuntime_QuarantinesAndServesNewJobs()
    {
        using (var store = Open())
        {
            store.CommitBatch([.. Enumerable.Range(0, 20).Select(i => Accept($"crash-{i}"))]);
            while (store.TakeNext() is { } job)
            {
                store.Finish(job.Id, JobStatuses.Succeeded, ResultEvent(job.Id));
            }

            foreach (var entry in store.ReadOutbox(1000))
            {
                store.MarkDelivered(entry.Seq);
            }
        }

        var bytes = CorruptFiles.OverwriteJobDataPage(Path.Combine(_dir.Path, JobStore.DatabaseFileName), "crash-5");

        var reopened = Open();
        try
        {
            Assert.Null(reopened.QuarantinedTo); // start-up reads no document of a finished job
            var lastOutboxSeq = reopened.LastOutboxSeq;
            var reported = new List<StoreQuarantine>();
            reopened.Quarantined += reported.Add;

            var fault = Assert.ThrowsAny<Exception>(() => reopened.CommitBatch([Accept("crash-5")]));

            Assert.True(JobStore.IsStorageFault(fault), fault.ToString());
            Assert.Equal(LiteDB.LiteException.INVALID_DATAFILE_STATE, Assert.IsType<LiteDB.LiteException>(fault).ErrorCode);
            Assert.NotNull(reopened.QuarantinedTo);
            Assert.StartsWith(Path.Combine(_dir.Path, "quarantine", "jobs-20250301T120000000Z"), reopened.QuarantinedTo, StringComparison.Ordinal);
            Assert.Equal(bytes.Length, new FileInfo(Path.Combine(reopened.QuarantinedTo, JobStore.DatabaseFileName)).Length);
            Assert.Equal(reopened.QuarantinedTo, Assert.Single(reported).Directory);
            Assert.Contains(_log.Entries, e => e.Level == LogLevel.Error && e.Id.Id == 1107 && e.Exception == fault
                && e.Message.Contains(reopened.QuarantinedTo, StringComparison.Ordinal));

            // The next calls work on the empty store; numbering continues above the moved file's.
            Assert.Equal(IngestDecisionKind.Accepted, reopened.CommitBatch([Accept("new-1")])[0].Kind);
            Assert.Equal(IngestDecisionKind.Accepted, reopened.CommitBatch([Accept("crash-5")])[0].Kind);
            var next = reopened.TakeNext()!;
            Assert.Equal("new-1", next.Id);
            Assert.True(reopened.Finish(next.Id, JobStatuses.Succeeded, ResultEvent(next.Id)));
            Assert.All(reopened.ReadOutbox(10), e => Assert.True(e.Seq > lastOutboxSeq));
            Assert.False(reopened.Finish("crash-7", JobStatuses.Succeeded, ResultEvent("crash-7"))); // lost with the file
        }
        finally
        {
            await Task.Run(reopened.Dispose).WaitAsync(TimeSpan.FromSeconds(30));
        }

        using var restarted = Open();
        Assert.Null(restarted.QuarantinedTo);
        Assert.Equal("crash-5", restarted.TakeNext()!.Id);
    }

    /// <summary>
    /// The newcomer's exact fault ("invalid segment position in index footer"): the jobs <c>_id</c> index page holding
    /// finished jobs is overwritten. Start-up walks that index, so the file is quarantined at open, not at the first
    /// resubmission.
    /// </summary>
    [Fact]
    public void Open_CorruptJobsIdIndexOfFinishedJobs_QuarantinedAtOpen()
    {
        using (var store = Open())
        {
            store.CommitBatch([.. Enumerable.Range(0, 20).Select(i => Accept($"crash-{i}"))]);
            while (store.TakeNext() is { } job)
            {
                store.Finish(job.Id, JobStatuses.Succeeded, ResultEvent(job.Id));
            }
        }

        CorruptFiles.OverwriteJobsIdIndexPage(Path.Combine(_dir.Path, JobStore.DatabaseFileName), "crash-5");

        using var reopened = Open();

        Assert.NotNull(reopened.QuarantinedTo);
        Assert.True(File.Exists(Path.Combine(reopened.QuarantinedTo, JobStore.DatabaseFileName)));
        Assert.Equal(IngestDecisionKind.Accepted, reopened.CommitBatch([Accept("crash-5")])[0].Kind);
    }

    /// <summary>
    /// Holders of old-store state after a runtime quarantine: the executor's taken job cannot be finished (Finish returns
    /// false, no exception), the queued and offloaded jobs are reported lost, the counters restart from the empty store,
    /// and outbox sequence numbers stay above every one handed out before (the publisher may still hold old entries).
    /// </summary>
    [Fact]
    public void Quarantined_AtRuntimeWithTakenQueuedAndOffloadedJobs_ReportsThemLostAndFinishReturnsFalse()
    {
        using (var store = Open())
        {
            store.CommitBatch([.. Enumerable.Range(0, 20).Select(i => Accept($"crash-{i}"))]);
            while (store.TakeNext() is { } job)
            {
                store.Finish(job.Id, JobStatuses.Succeeded, ResultEvent(job.Id));
            }

            store.CommitBatch([Accept("q1"), Accept("q2"), Accept("q3"), Accept(Job("off")) with { Offload = true }]);
        }

        CorruptFiles.OverwriteJobDataPage(Path.Combine(_dir.Path, JobStore.DatabaseFileName), "crash-5");
        using var reopened = Open();
        Assert.Null(reopened.QuarantinedTo);
        var taken = reopened.TakeNext()!;
        Assert.Equal("q1", taken.Id);
        var undelivered = reopened.ReadOutbox(1000);
        var reported = new List<StoreQuarantine>();
        reopened.Quarantined += reported.Add;

        Assert.ThrowsAny<LiteDB.LiteException>(() => reopened.CommitBatch([Accept("crash-5")]));

        var quarantine = Assert.Single(reported);
        Assert.Equal((2, 1, 1), (quarantine.LostQueued, quarantine.LostOffloaded, quarantine.LostRunning));
        Assert.Equal((0, 0, 0L), (reopened.CountQueued(), reopened.CountOffloaded(), reopened.QueuedBytes));

        // Every lost job (running, queued, offloaded) is answered once, FAILED storage_error, on its own reply topic
        // (second newcomer check: they had no final event at all and their senders waited forever).
        var answers = reopened.ReadOutbox(10);
        Assert.Equal(["off", "q1", "q2", "q3"], answers.Select(e => e.JobId).Order(StringComparer.Ordinal));
        Assert.All(answers, a =>
        {
            Assert.Equal("edgenode/results/" + a.JobId, a.Topic);
            using var doc = System.Text.Json.JsonDocument.Parse(a.Payload);
            Assert.Equal(JobStatuses.Failed, doc.RootElement.GetProperty("status").GetString());
            Assert.Equal(JobErrorCodes.Storage, doc.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.True(a.Seq > undelivered.Max(e => e.Seq));
        });
        Assert.Equal(4, reopened.OutboxCount);
        reopened.MarkDelivered([.. answers.Select(e => e.Seq)]);
        Assert.False(reopened.Finish(taken.Id, JobStatuses.Succeeded, ResultEvent(taken.Id))); // no second outcome
        Assert.False(reopened.ReturnToQueue("off"));
        reopened.MarkDelivered([.. undelivered.Select(e => e.Seq)]); // the publisher's old entries: ignored
        Assert.Equal(0, reopened.RequeueInterrupted());

        Assert.Equal(IngestDecisionKind.Accepted, reopened.CommitBatch([Accept("new-1")])[0].Kind);
        Assert.Equal(IngestDecisionKind.Accepted, reopened.CommitBatch([Accept("q2")])[0].Kind); // a resubmission runs
        var fresh = reopened.ReadOutbox(10);
        Assert.Equal(["new-1", "q2"], fresh.Select(e => e.JobId));
        Assert.True(fresh[0].Seq > answers.Max(e => e.Seq));
        Assert.Equal(2, reopened.CountQueued());
    }

    /// <summary>Not corruption: a duplicate key (CommitBatch provokes it on purpose), a lock timeout, an I/O error.</summary>
    [Fact]
    public void IsCorruption_OnlyUnreadableFileCodes()
    {
        Assert.True(JobStore.IsCorruption(new LiteDB.LiteException(LiteDB.LiteException.INVALID_DATAFILE_STATE, "invalid segment position in index footer")));
        Assert.True(JobStore.IsCorruption(new LiteDB.LiteException(0, "Invalid IndexPage on 12")));
        Assert.False(JobStore.IsCorruption(new LiteDB.LiteException(LiteDB.LiteException.INDEX_DUPLICATE_KEY, "duplicate")));
        Assert.False(JobStore.IsCorruption(new LiteDB.LiteException(LiteDB.LiteException.LOCK_TIMEOUT, "lock timeout")));
        Assert.False(JobStore.IsCorruption(new IOException("No space left on device")));
    }
}
