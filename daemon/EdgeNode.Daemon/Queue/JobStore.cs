using System.Globalization;
using System.Text;
using EdgeNode.Shared.Jobs;
using LiteDB;
using Microsoft.Extensions.Logging;

namespace EdgeNode.Daemon.Queue;

/// <summary>
/// The durable job queue and outbox of one daemon process: a LiteDB 5.0.21 database
/// (<c>{stateDirectory}/jobs.db</c> and its log <c>jobs-log.db</c>) behind an exclusive lock file (<c>{stateDirectory}/edgenode.lock</c>).
/// Implements the durability rules of DESIGN.md §4 with the LiteDB facts of notes/litedb.md.
/// </summary>
/// <remarks>
/// <para>Layout (every collection keeps only its <c>_id</c> index: fewer pages per commit, and no exposure to the
/// secondary-index rebuild bug of LiteDB 5.0.19+):</para>
/// <list type="bullet">
/// <item><c>jobs</c>: one document per accepted job, <c>_id</c> = job id. A deterministic id makes a retried insert
/// whose first attempt threw but committed a <see cref="IngestDecisionKind.Duplicate"/> (cases/durability.md 9).</item>
/// <item><c>queue</c>: one small entry per QUEUED job, <c>_id</c> = <c>(100 - priority) &lt;&lt; 55 | seq</c>, so the
/// first entry of the <c>_id</c> index is the highest priority, then the earliest accepted. Taking the next job
/// reads one index node instead of scanning jobs.</item>
/// <item><c>running</c>: one entry per IN_PROGRESS job (<c>_id</c> = job id, with its queue key), so
/// <see cref="RequeueInterrupted"/> never scans <c>jobs</c>.</item>
/// <item><c>offloaded</c>: one entry per OFFLOADED job (<c>_id</c> = job id, with its queue key and size), so a
/// restart finds the jobs the relay holds and re-sends them, and <see cref="ReturnToQueue"/> puts one back at its place.</item>
/// <item><c>outbox</c>: events to publish, <c>_id</c> = outbox seq (FIFO); delivered entries are deleted, a final event
/// stays in its job document for re-publishing byte-identically.</item>
/// <item><c>meta</c>: schema version and bounds of the job and outbox sequence numbers, reserved in blocks of 4,096 in
/// the same transaction as the first document that passes the previous bound, so sequence numbers increase across
/// restarts (with a gap) while most commits leave meta alone.</item>
/// </list>
/// <para>Every write is one LiteDB transaction on the calling thread (no awaiting inside), serialized by one lock.
/// LiteDB does not fsync its log on commit, so after each commit that the daemon acknowledges on (a batch, a
/// take, a final outcome, a re-queue) the store fsyncs <c>jobs-log.db</c> through the handle LiteDB wrote with,
/// and the directory after opening; a commit therefore survives a power loss, not only a process kill. The fsync of
/// an ingest batch or a final outcome runs after the store lock is released (group fsync: one fsync covers every
/// commit before it), so the lock is held for the transaction only; the method still returns only once its commit
/// is fsynced, and <see cref="ReadOutbox"/> hands out only fsynced entries. The undelivered outbox is mirrored in
/// memory, so the publisher normally reads no LiteDB page. While it is mirrored, a batch's <c>accepted</c> events get
/// outbox sequence numbers (so they go out in order with the outcomes, after the fsync) but are not written to LiteDB:
/// DESIGN.md §4 rule 2 makes outcomes durable, not the acknowledgement of acceptance, and writing and later deleting
/// one outbox document per accepted job was a third of the pages each ingest commit wrote and of what each
/// checkpoint then copied, holding up ingest (docs/BENCHMARKS.md "Ingest"). A crash, a reopen or an outage longer
/// than the mirror (16,384 events) loses the unpublished <c>accepted</c> events; the job and its final outcome are
/// not affected. While the outbox is not mirrored (after a restart with undelivered entries, until they drain)
/// <c>accepted</c> events are written as before, so the order of a job's events holds. Marking outbox entries delivered is not fsynced and its
/// deletion is deferred to the next write transaction: losing it only re-publishes byte-identical events. LiteDB's
/// auto-checkpoint is off (see <see cref="Checkpoint"/>). LiteDB runs over
/// file streams the store owns (<see cref="StoreFiles"/>: a failed write cannot leave a handle that blocks the
/// reopen, and a checkpoint fsyncs the data file before it truncates the log).</para>
/// <para>String ids are compared ordinally (LiteDB's default collation ignores case, which would make
/// <c>Job-1</c> a duplicate of <c>job-1</c>).</para>
/// <para>On open, a database that LiteDB cannot read (checked by reading the meta, queue, running and outbox
/// documents and the jobs they reference, and walking the jobs <c>_id</c> index) is moved with its log to <c>{stateDirectory}/quarantine/jobs-{utc}/</c>,
/// reported in <see cref="QuarantinedTo"/> and logged, and an empty store is started (DESIGN.md §4 rule 4).
/// The store never falls back to memory. Corruption that start-up did not read (a page in the middle of the file that
/// only a later lookup, insert or scan touches) is handled the same way when a call meets it: see
/// <see cref="IsCorruption"/> and <see cref="Quarantined"/>. An <see cref="IOException"/> (disk full, I/O error) propagates to the
/// caller; the store then reopens its database on the next call, so it recovers when space returns
/// (cases/durability.md 4). A batch that threw may have committed: retry it and the job ids decide.</para>
/// </remarks>
internal sealed class JobStore : IDisposable
{
    /// <summary>The lock file's name inside the state directory.</summary>
    public const string LockFileName = "edgenode.lock";

    /// <summary>The LiteDB data file's name inside the state directory.</summary>
    public const string DatabaseFileName = "jobs.db";

    /// <summary>LiteDB's write-ahead log next to the data file.</summary>
    public const string LogFileName = "jobs-log.db";

    /// <summary>Where unreadable databases are moved, inside the state directory.</summary>
    public const string QuarantineDirectoryName = "quarantine";

    /// <summary>
    /// Log size (bytes) past which <see cref="StoreMaintenance"/> checkpoints: 256 pages of 8 KiB (LiteDB's own default
    /// was 1,000 pages, done inside a commit).
    /// </summary>
    public const long CheckpointLogBytes = 256 * 8192;

    /// <summary>
    /// Hard bound of the log (bytes): a commit that leaves it larger checkpoints at once, so the log stays bounded even
    /// when the background checkpoint cannot run (4,096 pages of 8 KiB = 32 MiB).
    /// </summary>
    public const long MaxLogBytes = 4096 * 8192;

    private const int MemoryOutboxLimit = 16_384;
    private const long SeqReservation = 4_096;
    private const int MaxPendingDeletes = 1_024;
    private const int SchemaVersion = 1;
    private const int SeqBits = 55;
    private const long MaxSeq = (1L << SeqBits) - 1;
    private const int PriorityLimit = 100;

    private const string JobsCollection = "jobs";
    private const string QueueCollection = "queue";
    private const string RunningCollection = "running";
    private const string OffloadedCollection = "offloaded";
    private const string OutboxCollection = "outbox";
    private const string MetaCollection = "meta";
    private const string MetaId = "state";

    private static readonly Collation OrdinalCollation =
        new(CultureInfo.InvariantCulture.LCID, CompareOptions.Ordinal);

    private readonly Lock _gate = new();
    private readonly string _directory;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly StateDirectoryLock _lock;
    private readonly HashSet<string> _inFlight = new(StringComparer.Ordinal);

    // Where to answer every job without an outcome yet (QUEUED, IN_PROGRESS, OFFLOADED), under _gate: if the database is
    // found corrupt while running, these jobs are lost with it and each still gets a final event (QuarantineAtRuntime).
    // At most Queue:MaxJobs + offloaded entries of ~100 bytes.
    private Dictionary<string, (string Topic, byte[]? Correlation)> _pending = new(StringComparer.Ordinal);

    private StoreFiles? _files;

    // Durability (see the class remarks): _committed is written under _gate after each commit, _durable under _syncGate
    // after each fsync of the log; both only grow. An entry is published only when its seq <= _durable.OutboxSeq.
    private readonly Lock _syncGate = new();
    private CommitMark _committed = new(0, 0);
    private CommitMark _durable = new(0, 0);

    // The undelivered outbox in memory (lock order: _gate, then _outboxGate). When _memoryComplete, _memory holds
    // every entry of the outbox collection not reported delivered, in seq order, so the publisher never reads LiteDB;
    // _unmarked are entries reported delivered whose deletion from LiteDB is deferred to the next write transaction.
    private readonly Lock _outboxGate = new();
    private readonly List<OutboxEntry> _memory = [];
    private readonly List<long> _unmarked = [];
    private bool _memoryComplete;

    private long _nextJobSeq;
    private long _reservedJobSeq;
    private long _reservedOutboxSeq;
    private long _nextOutboxSeq;
    private int _queuedCount;
    private long _queuedBytes;
    private int _outboxCount;
    private int _runningCount;
    private int _offloadedCount;
    private int _runtimeQuarantines;
    private bool _disposed;

    private readonly Func<Stream, Stream>? _logDecorator;

    private JobStore(string directory, TimeProvider time, ILogger logger, StateDirectoryLock stateLock, Func<Stream, Stream>? logDecorator)
    {
        _logDecorator = logDecorator;
        _directory = directory;
        _time = time;
        _logger = logger;
        _lock = stateLock;
        DatabasePath = Path.Combine(directory, DatabaseFileName);
    }

    /// <summary>The absolute path of <c>jobs.db</c>.</summary>
    public string DatabasePath { get; }

    /// <summary>The absolute path of the lock file held by this store.</summary>
    public string LockPath => _lock.Path;

    /// <summary>
    /// When the database was found unreadable, at <see cref="Open(string, TimeProvider, ILogger)"/> or later by a call
    /// (<see cref="Quarantined"/>): the folder its files were last moved to (for status and metrics). Null while the
    /// database has always been readable.
    /// </summary>
    public string? QuarantinedTo { get; private set; }

    /// <summary>
    /// Raised when a call found the open database corrupt (<see cref="IsCorruption"/>), after the store moved its files
    /// to <see cref="QuarantinedTo"/> and opened an empty database; that call then throws the LiteDB error. Not raised
    /// for a quarantine at <see cref="Open(string, TimeProvider, ILogger)"/> (read <see cref="QuarantinedTo"/> then).
    /// Raised on the failing caller's thread while the store lock is held: a handler must be quick, must not call the
    /// store and must not take a lock a store caller may hold (setting gauges and status fields is fine).
    /// </summary>
    public event Action<StoreQuarantine>? Quarantined;

    /// <summary>UTF-8 bytes of the ids, prompts and stop sequences of the QUEUED jobs (for the <c>Queue:MaxBytes</c> bound).</summary>
    public long QueuedBytes
    {
        get
        {
            lock (_gate)
            {
                return _queuedBytes;
            }
        }
    }

    /// <summary>The sequence number of the newest outbox entry so far (0 when none was ever written).</summary>
    public long LastOutboxSeq
    {
        get
        {
            lock (_gate)
            {
                return _nextOutboxSeq - 1;
            }
        }
    }

    /// <summary>Undelivered outbox entries (not reported by <see cref="MarkDelivered(IReadOnlyList{long})"/>).</summary>
    public int OutboxCount
    {
        get
        {
            lock (_gate)
            {
                lock (_outboxGate)
                {
                    return _memoryComplete ? _memory.Count : _outboxCount - _unmarked.Count;
                }
            }
        }
    }

    /// <summary>
    /// The sequence number of the newest outbox entry whose commit is fsynced (0 when none): <see cref="ReadOutbox"/>
    /// returns entries up to it only.
    /// </summary>
    public long DurableOutboxSeq => Volatile.Read(ref _durable).OutboxSeq;

    /// <summary>Current size of <c>jobs-log.db</c> in bytes (0 when the database is closed after an I/O error).</summary>
    public long LogBytes
    {
        get
        {
            try
            {
                return Volatile.Read(ref _files)?.LogLength ?? 0;
            }
            catch (ObjectDisposedException)
            {
                return 0; // closed by an I/O error or Dispose meanwhile
            }
        }
    }

    /// <summary>
    /// True for the failures a store call raises when the disk or the file system fails (full disk, I/O error, lost
    /// permission) or LiteDB rejects the file: the store reopens itself on the next call, so a background loop logs
    /// them and retries instead of stopping the node (durability case 4).
    /// </summary>
    public static bool IsStorageFault(Exception exception) =>
        exception is IOException or LiteException or UnauthorizedAccessException;

    /// <summary>
    /// True for the LiteDB errors that mean the file's content is unreadable, which a running store answers by moving
    /// the file aside (<see cref="Quarantined"/>) rather than retrying it forever. LiteDB 5.0.21's
    /// <c>LiteException</c> codes:
    /// <list type="bullet">
    /// <item><c>INVALID_DATAFILE_STATE</c> (999): every <c>ENSURE</c> check on page contents ("invalid segment position in
    /// index footer", "page type must be index page", "Detected loop in FindAll", "empty page must be defined as empty
    /// type"); the file says something impossible.</item>
    /// <item>0: <c>LiteException.InvalidPageType</c> ("Invalid ... on page"), a page of another type where a link points.</item>
    /// <item><c>INVALID_DATABASE</c> (103): the header page is not a LiteDB header.</item>
    /// <item><c>INVALID_FREE_SPACE_PAGE</c> (213): a page's free-space bookkeeping disagrees with its content.</item>
    /// </list>
    /// Not corruption: <c>INDEX_DUPLICATE_KEY</c> (110, which <see cref="CommitBatch"/> provokes on purpose),
    /// <c>LOCK_TIMEOUT</c> (120), <c>INVALID_TRANSACTION_STATE</c> (126) and the other codes, which describe the call, not
    /// the file; nor an <see cref="IOException"/> (disk full, I/O error: the store reopens the same file on the next
    /// call, cases/durability.md 4).
    /// </summary>
    internal static bool IsCorruption(Exception exception) => exception switch
    {
        UnreadableStoreException => true,
        LiteException lite => lite.ErrorCode is LiteException.INVALID_DATAFILE_STATE or 0 or LiteException.INVALID_DATABASE
            or LiteException.INVALID_FREE_SPACE_PAGE,
        _ => false,
    };

    /// <summary>
    /// Creates <paramref name="stateDirectory"/> if needed, takes its lock file and opens (or creates) <c>jobs.db</c>.
    /// </summary>
    /// <param name="stateDirectory">The daemon's state directory (<c>Node:StateDirectory</c>, systemd <c>StateDirectory</c>).</param>
    /// <param name="time">Source of the UTC timestamps stored with jobs.</param>
    /// <param name="logger">Receives the open summary and any quarantine (event ids 1100-1199).</param>
    /// <exception cref="StoreLockedException">Another process, or another open store, holds <c>edgenode.lock</c>;
    /// the message names the lock file (cases/durability.md 2 and 8).</exception>
    /// <exception cref="IOException">The directory or files cannot be created or read.</exception>
    /// <exception cref="UnauthorizedAccessException">No permission on the state directory.</exception>
    /// <exception cref="InvalidOperationException">The database was written by a newer schema version.</exception>
    public static JobStore Open(string stateDirectory, TimeProvider time, ILogger logger) =>
        Open(stateDirectory, time, logger, logDecorator: null);

    /// <summary>
    /// <see cref="Open(string, TimeProvider, ILogger)"/> with a test hook that wraps the stream LiteDB writes its log
    /// to (on every open and reopen), to inject I/O faults such as a full disk.
    /// </summary>
    internal static JobStore Open(string stateDirectory, TimeProvider time, ILogger logger, Func<Stream, Stream>? logDecorator)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateDirectory);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);

        var directory = Path.GetFullPath(stateDirectory);
        Directory.CreateDirectory(directory);
        var stateLock = StateDirectoryLock.Acquire(Path.Combine(directory, LockFileName));
        try
        {
            var store = new JobStore(directory, time, logger, stateLock, logDecorator);
            lock (store._gate)
            {
                store.OpenDatabase(allowQuarantine: true);
                Log.StoreOpened(logger, store.DatabasePath, store._queuedCount, store._runningCount, store._outboxCount);
            }

            return store;
        }
        catch
        {
            stateLock.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Commits one ingest batch (group commit) in ONE transaction, then fsyncs the log; acknowledge the MQTT
    /// messages (PUBACK, in order) only after this returns (DESIGN.md §4 rule 1).
    /// </summary>
    /// <param name="items">The batch, in arrival order.</param>
    /// <returns>One decision per item, in the same order. A valid job with a new id is
    /// <see cref="IngestDecisionKind.Accepted"/> (job QUEUED, its <c>accepted</c> event in the outbox); a valid job
    /// whose id is already stored, or appeared earlier in this batch, is <see cref="IngestDecisionKind.Duplicate"/>
    /// with the stored record (nothing written); a rejected item is <see cref="IngestDecisionKind.Rejected"/> (its
    /// <c>error</c> event in the outbox, no job).</returns>
    /// <exception cref="ArgumentException">An item is inconsistent (<c>Job.Id</c> differs from <c>JobId</c>, empty id or topic).</exception>
    /// <exception cref="IOException">Disk full or I/O error: do not acknowledge; the batch may or may not have
    /// committed, and retrying it is safe (ids decide).</exception>
    /// <exception cref="ObjectDisposedException">The store is disposed.</exception>
    public IReadOnlyList<IngestDecision> CommitBatch(IReadOnlyList<IngestItem> items)
    {
        Validate(items);

        if (items.Count == 0)
        {
            return [];
        }

        var decisions = new IngestDecision[items.Count];
        long gen;
        lock (_gate)
        {
            var nextJobSeq = _nextJobSeq;
            var nextOutboxSeq = _nextOutboxSeq;
            var addedJobs = 0;
            var addedBytes = 0L;
            var addedOffloaded = 0;
            var acceptedAt = _time.GetUtcNow();
            var added = new List<OutboxEntry>(items.Count);
            var unmarked = UnmarkedSnapshot();
            var deleted = 0;
            (long Job, long Outbox)? reserved = null;
            bool mirrored;
            lock (_outboxGate)
            {
                mirrored = _memoryComplete; // changes only under _gate, which this method holds
            }

            // First without looking each id up: a new id is the rule, and LiteDB's FindById walks the _id skip list a
            // second time and allocates ~34 KB (half of what a job cost to commit). A known id (or one repeated in the
            // batch) makes the insert throw INDEX_DUPLICATE_KEY, LiteDB rolls the whole transaction back, and the batch
            // is committed again, looking every id up.
            try
            {
                InTransaction(db => Body(db, lookUp: false));
            }
            catch (LiteException ex) when (ex.ErrorCode == LiteException.INDEX_DUPLICATE_KEY)
            {
                InTransaction(db => Body(db, lookUp: true));
            }

            _nextJobSeq = nextJobSeq;
            _nextOutboxSeq = nextOutboxSeq;
            Reserved(reserved);
            _queuedCount += addedJobs;
            _queuedBytes += addedBytes;
            _offloadedCount += addedOffloaded;
            for (var i = 0; i < items.Count; i++)
            {
                if (decisions[i].Kind == IngestDecisionKind.Accepted)
                {
                    _pending[items[i].JobId] = (items[i].ReplyTopic, items[i].CorrelationData);
                }
            }

            OutboxCommitted(added, unmarked, deleted);
            gen = MarkCommitted();
            CheckpointIfLogOverLocked(MaxLogBytes);

            bool Body(LiteDatabase db, bool lookUp)
            {
                nextJobSeq = _nextJobSeq;
                nextOutboxSeq = _nextOutboxSeq;
                addedJobs = 0;
                addedBytes = 0;
                addedOffloaded = 0;
                added.Clear();
                reserved = null;
                var jobs = db.GetCollection(JobsCollection);
                var queue = db.GetCollection(QueueCollection);
                var outbox = db.GetCollection(OutboxCollection);
                for (var i = 0; i < items.Count; i++)
                {
                    var item = items[i];
                    if (item.Job is not { } job)
                    {
                        added.Add(AddOutbox(outbox, nextOutboxSeq++, item.JobId, item.ReplyTopic, item.CorrelationData, item.EventPayload));
                        decisions[i] = new IngestDecision(IngestDecisionKind.Rejected, item.JobId, null);
                        continue;
                    }

                    // Reads inside the transaction see its own inserts: a repeat within the batch is a duplicate too.
                    if (lookUp && jobs.FindById(item.JobId) is { } existing)
                    {
                        decisions[i] = new IngestDecision(IngestDecisionKind.Duplicate, item.JobId, ToRecord(existing));
                        continue;
                    }

                    var seq = nextJobSeq++;
                    if (seq > MaxSeq)
                    {
                        throw new InvalidOperationException("The job sequence number space is exhausted.");
                    }

                    var size = RequestBytes(job);
                    var document = JobDocument(job, seq, item, acceptedAt);
                    if (item.Offload)
                    {
                        document["status"] = JobStatuses.Offloaded;
                        jobs.Insert(document);
                        db.GetCollection(OffloadedCollection).Insert(RunningDocument(job.Id, QueueKey(job.Priority, seq), size));
                        addedOffloaded++;
                    }
                    else
                    {
                        jobs.Insert(document);
                        queue.Insert(QueueDocument(QueueKey(job.Priority, seq), job.Id, size));
                        addedJobs++;
                        addedBytes += size;
                    }

                    added.Add(mirrored
                        ? new OutboxEntry(nextOutboxSeq++, item.JobId, item.ReplyTopic, item.CorrelationData, item.EventPayload, Durable: false)
                        : AddOutbox(outbox, nextOutboxSeq++, item.JobId, item.ReplyTopic, item.CorrelationData, item.EventPayload));
                    decisions[i] = new IngestDecision(IngestDecisionKind.Accepted, item.JobId, null);
                }

                if (added.Count > 0)
                {
                    reserved = Reserve(db, nextJobSeq, nextOutboxSeq);
                }

                deleted = DeleteUnmarked(outbox, unmarked);

                // Always fsync: a Duplicate may be the retry of a batch that committed but threw before its fsync,
                // and the caller is about to acknowledge it.
                return true;
            }
        }

        SyncThrough(gen); // outside the lock: the outbox publisher and the executor are not held up by the fsync
        return decisions;
    }

    /// <summary>
    /// Takes the next job: the highest priority first, then the earliest accepted (FIFO). Marks it IN_PROGRESS,
    /// increments <see cref="JobRecord.Attempts"/>, and fsyncs, so an attempt is counted even across a power loss.
    /// </summary>
    /// <returns>The job as updated, or null when no job is QUEUED. The caller checks
    /// <see cref="JobRecord.Attempts"/> (poison jobs, DESIGN.md §4 rule 3) and <see cref="JobRecord.Deadline"/>
    /// (rule 5) before running it.</returns>
    /// <exception cref="IOException">I/O error; the job stays QUEUED.</exception>
    public JobRecord? TakeNext()
    {
        lock (_gate)
        {
            JobRecord? taken = null;
            var removedEntries = 0;
            var removedBytes = 0L;
            var startedAt = _time.GetUtcNow();

            var wrote = InTransaction(db =>
            {
                var queue = db.GetCollection(QueueCollection);
                var jobs = db.GetCollection(JobsCollection);
                while (queue.Find(Query.All(), 0, 1).FirstOrDefault() is { } entry)
                {
                    queue.Delete(entry["_id"]);
                    removedEntries++;
                    removedBytes += entry["size"].AsInt32;
                    var jobId = entry["job_id"].AsString;
                    var doc = jobs.FindById(jobId);
                    if (doc is null || doc["status"].AsString != JobStatuses.Queued)
                    {
                        continue; // an entry without a QUEUED job must never block the queue
                    }

                    doc["status"] = JobStatuses.InProgress;
                    doc["attempts"] = doc["attempts"].AsInt32 + 1;
                    doc["started_at"] = startedAt.UtcTicks;
                    jobs.Update(doc);
                    db.GetCollection(RunningCollection).Upsert(RunningDocument(jobId, entry["_id"].AsInt64, entry["size"].AsInt32));
                    taken = ToRecord(doc);
                    return true;
                }

                return removedEntries > 0;
            });

            _queuedCount -= removedEntries;
            _queuedBytes -= removedBytes;
            if (taken is not null)
            {
                _inFlight.Add(taken.Id);
                _runningCount++;
            }

            if (wrote)
            {
                SyncNow();
            }

            return taken;
        }
    }

    /// <summary>
    /// Records a job's one final outcome in one transaction: final status, the event bytes (kept for byte-identical
    /// re-publishing) and an outbox entry to the job's reply topic; then fsyncs. A QUEUED job (canceled or expired
    /// before it ran) leaves the queue.
    /// </summary>
    /// <param name="jobId">A stored job.</param>
    /// <param name="finalStatus">A final status (<see cref="JobStatuses.IsFinal"/>): SUCCEEDED, FAILED, TIMED_OUT, CANCELED or REJECTED.</param>
    /// <param name="finalEvent">The <c>result</c> or <c>error</c> event (<see cref="JobEvents"/>).</param>
    /// <returns>True when recorded; false when the job already had a final outcome, which is kept (a job has
    /// exactly one outcome, DESIGN.md §4 rule 2; e.g. a cancel racing the result), or when the job is no longer stored
    /// because the database was quarantined at run time (<see cref="Quarantined"/>) after the caller got it: the job
    /// was lost with the moved file.</returns>
    /// <exception cref="ArgumentException"><paramref name="finalStatus"/> is not final.</exception>
    /// <exception cref="InvalidOperationException">No job has this id and the store was never quarantined at run time
    /// (a bug in the caller).</exception>
    /// <exception cref="IOException">I/O error: nothing is known to be recorded; retry.</exception>
    public bool Finish(string jobId, string finalStatus, byte[] finalEvent)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        ArgumentNullException.ThrowIfNull(finalEvent);
        if (!JobStatuses.IsFinal(finalStatus))
        {
            throw new ArgumentException($"'{finalStatus}' is not a final status.", nameof(finalStatus));
        }

        long gen = 0;
        var recorded = false;
        lock (_gate)
        {
            var leftQueueBytes = -1L;
            var leftRunning = false;
            var leftOffloaded = false;
            var nextOutboxSeq = _nextOutboxSeq;
            var finishedAt = _time.GetUtcNow();
            OutboxEntry? added = null;
            var unmarked = UnmarkedSnapshot();
            var deleted = 0;
            (long Job, long Outbox)? reserved = null;

            InTransaction(db =>
            {
                var jobs = db.GetCollection(JobsCollection);
                var doc = jobs.FindById(jobId);
                if (doc is null)
                {
                    // After a runtime quarantine, a job taken or offloaded before it is gone with the moved file.
                    return _runtimeQuarantines > 0 ? false : throw new InvalidOperationException($"Job '{jobId}' is not in the store.");
                }

                var status = doc["status"].AsString;
                if (JobStatuses.IsFinal(status))
                {
                    return false;
                }

                if (status == JobStatuses.Queued)
                {
                    var queue = db.GetCollection(QueueCollection);
                    var key = QueueKey(doc["request"]["priority"].AsInt32, doc["seq"].AsInt64);
                    if (queue.FindById(key) is { } entry && queue.Delete(key))
                    {
                        leftQueueBytes = entry["size"].AsInt32;
                    }
                }

                leftRunning = db.GetCollection(RunningCollection).Delete(jobId);
                leftOffloaded = db.GetCollection(OffloadedCollection).Delete(jobId);
                doc["status"] = finalStatus;
                doc["final_event"] = finalEvent;
                doc["finished_at"] = finishedAt.UtcTicks;
                jobs.Update(doc);
                var outbox = db.GetCollection(OutboxCollection);
                added = AddOutbox(outbox, nextOutboxSeq++, jobId, doc["reply_topic"].AsString, NullableBinary(doc["correlation"]), finalEvent);
                reserved = Reserve(db, _nextJobSeq, nextOutboxSeq);
                deleted = DeleteUnmarked(outbox, unmarked);
                recorded = true;
                return true;
            });

            if (recorded)
            {
                _nextOutboxSeq = nextOutboxSeq;
                Reserved(reserved);
                OutboxCommitted([added!], unmarked, deleted);
                gen = MarkCommitted();
                _inFlight.Remove(jobId);
                _pending.Remove(jobId);
                if (leftRunning)
                {
                    _runningCount--;
                }

                if (leftOffloaded)
                {
                    _offloadedCount--;
                }

                if (leftQueueBytes >= 0)
                {
                    _queuedCount--;
                    _queuedBytes -= leftQueueBytes;
                }

                CheckpointIfLogOverLocked(MaxLogBytes);
            }
        }

        SyncThrough(gen);
        return recorded;
    }

    /// <summary>
    /// Reads up to <paramref name="max"/> undelivered outbox entries whose commit is fsynced (seq up to
    /// <see cref="DurableOutboxSeq"/>), lowest <see cref="OutboxEntry.Seq"/> first. Served from memory (no LiteDB read,
    /// no store lock) while the store mirrors its whole undelivered outbox, which is the normal case; from LiteDB after
    /// a restart with undelivered entries, a long outage (more than 16,384 undelivered) or an I/O error, until the
    /// outbox is empty again.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="max"/> is not positive.</exception>
    /// <exception cref="IOException">I/O error.</exception>
    public IReadOnlyList<OutboxEntry> ReadOutbox(int max)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max);
        var durable = Volatile.Read(ref _durable).OutboxSeq;
        lock (_outboxGate)
        {
            if (_memoryComplete)
            {
                var entries = new List<OutboxEntry>(Math.Min(max, _memory.Count));
                foreach (var entry in _memory)
                {
                    if (entry.Seq > durable || entries.Count == max)
                    {
                        break;
                    }

                    entries.Add(entry);
                }

                return entries;
            }
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            try
            {
                FlushDeliveredLocked(); // the collection then holds exactly the undelivered entries
            }
            catch (Exception ex) when (IsStorageFault(ex))
            {
                // Disk full: the deletions stay pending and the entries they name are skipped below; what was not
                // delivered yet still goes out. InTransaction has logged an I/O error or a quarantine already.
                if (ex is not IOException && !IsCorruption(ex))
                {
                    Log.StoreIoError(_logger, ex);
                }
            }

            var delivered = new HashSet<long>(UnmarkedSnapshot());
            var entries = Read(db => db.GetCollection(OutboxCollection).Find(Query.All(), 0, max + delivered.Count)
                .Select(ToOutboxEntry).Where(e => !delivered.Contains(e.Seq)).Take(max).TakeWhile(e => e.Seq <= durable).ToList());
            if (_outboxCount == 0)
            {
                lock (_outboxGate)
                {
                    _memory.Clear();
                    _memoryComplete = true; // nothing left in LiteDB: from now on every new entry is mirrored
                }
            }

            return entries;
        }
    }

    /// <summary>Removes one published entry from the outbox: <see cref="MarkDelivered(IReadOnlyList{long})"/> of one.</summary>
    /// <exception cref="IOException">I/O error.</exception>
    public void MarkDelivered(long seq) => MarkDelivered([seq]);

    /// <summary>
    /// Reports published entries (after their QoS 1 PUBACKs): they leave <see cref="ReadOutbox"/> and
    /// <see cref="OutboxCount"/> at once. While the outbox is mirrored in memory the deletion from LiteDB is deferred and
    /// written inside the next job commit's transaction (or by <see cref="FlushDelivered"/>, a checkpoint, or
    /// <see cref="Dispose"/>; at once past 1,024 pending), so the publisher never waits for the store lock; otherwise
    /// they are deleted in one transaction now. Never fsynced: a deletion lost in a crash only publishes those entries
    /// again, byte-identical (DESIGN.md §4.2). Unknown or already reported entries are ignored.
    /// </summary>
    /// <param name="seqs">Outbox sequence numbers (<see cref="OutboxEntry.Seq"/>), in any order.</param>
    /// <exception cref="ArgumentNullException"><paramref name="seqs"/> is null.</exception>
    /// <exception cref="IOException">I/O error while deleting (disk full): the deletion stays pending and is written by a
    /// later transaction; this store does not read those entries again (after a restart they may be published again).</exception>
    public void MarkDelivered(IReadOnlyList<long> seqs)
    {
        ArgumentNullException.ThrowIfNull(seqs);
        if (seqs.Count == 0)
        {
            return;
        }

        lock (_outboxGate)
        {
            if (_memoryComplete)
            {
                var reported = seqs as IReadOnlySet<long> ?? new HashSet<long>(seqs);
                _memory.RemoveAll(entry =>
                {
                    if (!reported.Contains(entry.Seq))
                    {
                        return false;
                    }

                    if (entry.Durable)
                    {
                        _unmarked.Add(entry.Seq);
                    }

                    return true;
                });
                if (_unmarked.Count < MaxPendingDeletes)
                {
                    return;
                }
            }
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            lock (_outboxGate)
            {
                if (!_memoryComplete)
                {
                    // Not mirrored: the given entries are deleted now (with any deferred ones); unknown seqs are ignored.
                    var pending = new HashSet<long>(_unmarked);
                    _unmarked.AddRange(seqs.Where(pending.Add));
                }
            }

            FlushDeliveredLocked();
        }
    }

    /// <summary>
    /// Writes the deferred deletions of delivered entries (see <see cref="MarkDelivered(IReadOnlyList{long})"/>) in one
    /// transaction, not fsynced. The outbox publisher calls it when idle.
    /// </summary>
    /// <exception cref="IOException">I/O error: the deletions stay pending.</exception>
    public void FlushDelivered()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FlushDeliveredLocked();
        }
    }

    /// <summary>
    /// Puts jobs that were IN_PROGRESS when a previous process stopped back in the queue, at their original place
    /// (same priority and acceptance order), keeping their <see cref="JobRecord.Attempts"/> (DESIGN.md §4 rule 3).
    /// Jobs taken by this store instance and not yet finished are left alone, so calling it late is harmless.
    /// </summary>
    /// <returns>How many jobs were re-queued.</returns>
    /// <exception cref="IOException">I/O error.</exception>
    public int RequeueInterrupted()
    {
        lock (_gate)
        {
            var requeued = 0;
            var removed = 0;
            var addedEntries = 0;
            var addedBytes = 0L;
            var wrote = InTransaction(db =>
            {
                var running = db.GetCollection(RunningCollection);
                var jobs = db.GetCollection(JobsCollection);
                var queue = db.GetCollection(QueueCollection);
                foreach (var entry in running.FindAll().ToList())
                {
                    var jobId = entry["_id"].AsString;
                    if (_inFlight.Contains(jobId))
                    {
                        continue;
                    }

                    running.Delete(jobId);
                    removed++;
                    var doc = jobs.FindById(jobId);
                    if (doc is null || doc["status"].AsString != JobStatuses.InProgress)
                    {
                        continue;
                    }

                    doc["status"] = JobStatuses.Queued;
                    jobs.Update(doc);
                    if (queue.Upsert(QueueDocument(entry["key"].AsInt64, jobId, entry["size"].AsInt32)))
                    {
                        addedEntries++;
                        addedBytes += entry["size"].AsInt32;
                    }

                    requeued++;
                }

                return removed > 0;
            });

            if (removed > 0)
            {
                _runningCount -= removed;
                _queuedCount += addedEntries;
                _queuedBytes += addedBytes;
            }

            if (wrote)
            {
                SyncNow();
            }

            if (requeued > 0)
            {
                Log.JobsRequeued(_logger, requeued);
            }

            return requeued;
        }
    }

    /// <summary>
    /// The jobs stored OFFLOADED (held by the cloud relay, or about to be sent), in queue order: after a restart
    /// these are re-sent with the same id (the relay is idempotent by id, DESIGN.md §6).
    /// </summary>
    /// <exception cref="IOException">I/O error.</exception>
    public IReadOnlyList<JobRecord> ListOffloaded()
    {
        lock (_gate)
        {
            return Read(db =>
            {
                var jobs = db.GetCollection(JobsCollection);
                return db.GetCollection(OffloadedCollection).FindAll()
                    .OrderBy(e => e["key"].AsInt64)
                    .Select(e => jobs.FindById(e["_id"].AsString))
                    .Where(d => d is not null && d["status"].AsString == JobStatuses.Offloaded)
                    .Select(d => ToRecord(d!))
                    .ToList();
            });
        }
    }

    /// <summary>
    /// Puts an OFFLOADED job back in the local queue at its original place (same priority and acceptance order),
    /// status QUEUED, in one fsynced transaction: the relay failed, timed out or refused it (DESIGN.md §5).
    /// </summary>
    /// <returns>True when the job moved; false when it is not OFFLOADED (already finished, or unknown).</returns>
    /// <exception cref="IOException">I/O error: the job stays OFFLOADED.</exception>
    public bool ReturnToQueue(string jobId)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        lock (_gate)
        {
            var size = -1;
            var wrote = InTransaction(db =>
            {
                var offloaded = db.GetCollection(OffloadedCollection);
                var jobs = db.GetCollection(JobsCollection);
                if (offloaded.FindById(jobId) is not { } entry)
                {
                    return false;
                }

                offloaded.Delete(jobId);
                var doc = jobs.FindById(jobId);
                if (doc is null || doc["status"].AsString != JobStatuses.Offloaded)
                {
                    size = -2; // a stale entry: removed, nothing queued
                    return true;
                }

                doc["status"] = JobStatuses.Queued;
                jobs.Update(doc);
                db.GetCollection(QueueCollection).Upsert(QueueDocument(entry["key"].AsInt64, jobId, entry["size"].AsInt32));
                size = entry["size"].AsInt32;
                return true;
            });

            if (wrote)
            {
                SyncNow();
            }

            if (size == -1)
            {
                return false;
            }

            _offloadedCount--;
            if (size < 0)
            {
                return false;
            }

            _queuedCount++;
            _queuedBytes += size;
            return true;
        }
    }

    /// <summary>How many jobs are OFFLOADED (counted on the depth side of the metrics invariant).</summary>
    public int CountOffloaded()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _offloadedCount;
        }
    }

    /// <summary>Reads one job, or null when the id is unknown.</summary>
    /// <exception cref="IOException">I/O error.</exception>
    public JobRecord? Get(string jobId)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        lock (_gate)
        {
            return Read(db => db.GetCollection(JobsCollection).FindById(jobId) is { } doc ? ToRecord(doc) : null);
        }
    }

    /// <summary>How many jobs are QUEUED (for the <c>Queue:MaxJobs</c> bound and metrics).</summary>
    public int CountQueued()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _queuedCount;
        }
    }

    /// <summary>
    /// Deletes up to <paramref name="max"/> jobs whose final outcome was recorded before <paramref name="finishedBefore"/>
    /// (the <c>Queue:Retention</c> window). After that a resubmitted id is a new job. Scans the jobs collection
    /// (no secondary index): call it rarely, when idle.
    /// </summary>
    /// <returns>How many jobs were deleted.</returns>
    /// <exception cref="IOException">I/O error.</exception>
    public int PurgeFinished(DateTimeOffset finishedBefore, int max)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(max);
        lock (_gate)
        {
            var deleted = 0;
            InTransaction(db =>
            {
                var jobs = db.GetCollection(JobsCollection);
                var old = jobs.Find(Query.And(Query.GTE("finished_at", 0L), Query.LT("finished_at", finishedBefore.UtcTicks)), 0, max)
                    .Select(d => d["_id"])
                    .ToList();
                foreach (var id in old)
                {
                    if (jobs.Delete(id))
                    {
                        deleted++;
                    }
                }

                return deleted > 0;
            });

            if (deleted > 0)
            {
                Log.FinishedJobsPurged(_logger, deleted, finishedBefore);
            }

            return deleted;
        }
    }

    /// <summary>
    /// Writes the deferred outbox deletions, then copies the LiteDB log into the data file and truncates the log
    /// (LiteDB fsyncs the data file first). LiteDB's own auto-checkpoint is off (it ran inside the commit that crossed
    /// 1,000 log pages, holding up ingest for tens of ms): <see cref="StoreMaintenance"/> calls
    /// <see cref="CheckpointIfLogOver"/> often, and a commit checkpoints itself past <see cref="MaxLogBytes"/>.
    /// </summary>
    /// <exception cref="IOException">I/O error.</exception>
    public void Checkpoint()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FlushDeliveredLocked();
            CheckpointLocked();
        }
    }

    /// <summary>
    /// Checkpoints (as <see cref="Checkpoint"/>) only when <c>jobs-log.db</c> is larger than <paramref name="bytes"/>:
    /// called every 100 ms by <see cref="StoreMaintenance"/> with <see cref="CheckpointLogBytes"/>, so that each
    /// checkpoint copies little and holds the store lock briefly.
    /// </summary>
    /// <returns>True when it checkpointed.</returns>
    /// <exception cref="IOException">I/O error.</exception>
    public bool CheckpointIfLogOver(long bytes)
    {
        if (LogBytes <= bytes)
        {
            return false;
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_files is null || _files.LogLength <= bytes)
            {
                return false;
            }

            FlushDeliveredLocked();
            CheckpointLocked();
            return true;
        }
    }

    /// <summary>Checkpoints, closes the database and releases the lock file. Errors while closing are logged.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            if (_files is not null)
            {
                try
                {
                    FlushDeliveredLocked(); // so that a clean restart does not publish delivered entries again
                }
                catch (Exception ex) when (ex is IOException or LiteException)
                {
                    Log.StoreCloseFailed(_logger, ex);
                }
            }

            _disposed = true;
            if (_files is not null)
            {
                try
                {
                    _files.Database.Checkpoint();
                }
                catch (Exception ex) when (ex is IOException or LiteException)
                {
                    Log.StoreCloseFailed(_logger, ex);
                }

                var checkpointed = _files.LogLength == 0;
                CloseQuietly(_files);
                _files = null;
                if (checkpointed)
                {
                    File.Delete(Path.Combine(_directory, LogFileName)); // as LiteDB does with an empty log
                }
            }

            _lock.Dispose();
        }
    }

    private static void Validate(IReadOnlyList<IngestItem> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        for (var index = 0; index < items.Count; index++)
        {
            var item = items[index];
            if (item is null)
            {
                throw new ArgumentException($"Item {index} is null.", nameof(items));
            }

            if (string.IsNullOrEmpty(item.JobId) || string.IsNullOrEmpty(item.ReplyTopic) || item.EventPayload is null)
            {
                throw new ArgumentException($"Item {index} needs a job id, a reply topic and an event payload.", nameof(items));
            }

            if (item.Job is not null && !string.Equals(item.Job.Id, item.JobId, StringComparison.Ordinal))
            {
                throw new ArgumentException($"Item {index}: JobId '{item.JobId}' differs from Job.Id '{item.Job.Id}'.", nameof(items));
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> (which returns whether it wrote anything) in one transaction and returns what it
    /// returned. Does not fsync: a durable caller calls <see cref="MarkCommitted"/> under the lock, then
    /// <see cref="SyncThrough"/> (inside or, better, outside the lock) before it reports success.
    /// </summary>
    private bool InTransaction(Func<LiteDatabase, bool> body)
    {
        var db = Database();
        try
        {
            if (!db.BeginTrans())
            {
                throw new InvalidOperationException("A LiteDB transaction is already open on this thread.");
            }

            bool wrote;
            var committed = false;
            try
            {
                wrote = body(db);
                db.Commit();
                committed = true;
            }
            finally
            {
                if (!committed)
                {
                    TryRollback(db);
                }
            }

            return wrote;
        }
        catch (IOException ex)
        {
            OnIoError(ex);
            throw;
        }
        catch (Exception ex) when (IsCorruption(ex))
        {
            QuarantineAtRuntime(ex);
            throw;
        }
    }

    /// <summary>Records that every commit so far has returned (under <c>_gate</c>); returns its generation for <see cref="SyncThrough"/>.</summary>
    private long MarkCommitted()
    {
        var mark = new CommitMark(_committed.Gen + 1, _nextOutboxSeq - 1);
        Volatile.Write(ref _committed, mark);
        return mark.Gen;
    }

    /// <summary>
    /// Returns once the commit of generation <paramref name="gen"/> is fsynced (group fsync: one fsync covers every
    /// commit that returned before it started, so concurrent callers share it). Never called with <c>_syncGate</c>'s
    /// callers holding it; may be called with or without <c>_gate</c> held (lock order: <c>_gate</c>, then <c>_syncGate</c>).
    /// </summary>
    /// <exception cref="IOException">The fsync failed or the database was closed meanwhile: the commit is not known durable.</exception>
    private void SyncThrough(long gen)
    {
        if (gen <= 0 || Volatile.Read(ref _durable).Gen >= gen)
        {
            return;
        }

        StoreFiles? files;
        IOException? failure = null;
        lock (_syncGate)
        {
            if (_durable.Gen >= gen)
            {
                return;
            }

            var target = Volatile.Read(ref _committed); // every commit up to target.Gen has written its pages
            files = Volatile.Read(ref _files);
            try
            {
                if (files is null)
                {
                    throw new IOException("The job store was closed after an I/O error before its log was fsynced.");
                }

                files.FlushLog();
                Volatile.Write(ref _durable, target);
            }
            catch (IOException ex)
            {
                failure = ex;
            }
            catch (ObjectDisposedException ex)
            {
                failure = new IOException("The job store was closed before its log was fsynced.", ex);
            }
        }

        if (failure is not null)
        {
            lock (_gate)
            {
                if (files is not null && ReferenceEquals(files, _files))
                {
                    OnIoError(failure);
                }
            }

            throw failure;
        }
    }

    /// <summary>Durable now: <see cref="MarkCommitted"/> then <see cref="SyncThrough"/> (for rare writes, under <c>_gate</c>).</summary>
    private void SyncNow() => SyncThrough(MarkCommitted());

    /// <summary>A snapshot of the entries reported delivered whose LiteDB deletion is pending (under <c>_gate</c>).</summary>
    private List<long> UnmarkedSnapshot()
    {
        lock (_outboxGate)
        {
            return _unmarked.Count == 0 ? [] : [.. _unmarked];
        }
    }

    /// <summary>Deletes <paramref name="seqs"/> from the outbox collection inside the caller's transaction; returns how many existed.</summary>
    private static int DeleteUnmarked(ILiteCollection<BsonDocument> outbox, List<long> seqs)
    {
        var deleted = 0;
        foreach (var seq in seqs)
        {
            if (outbox.Delete(seq))
            {
                deleted++;
            }
        }

        return deleted;
    }

    /// <summary>
    /// After a commit that inserted <paramref name="added"/> and deleted the <paramref name="deletedSnapshot"/> prefix of
    /// <c>_unmarked</c> (<paramref name="deleted"/> of them existed): updates the outbox count and the memory outbox.
    /// Under <c>_gate</c>.
    /// </summary>
    private void OutboxCommitted(List<OutboxEntry> added, List<long> deletedSnapshot, int deleted)
    {
        foreach (var entry in added)
        {
            _outboxCount += entry.Durable ? 1 : 0;
        }

        _outboxCount -= deleted;
        lock (_outboxGate)
        {
            if (_unmarked.Count >= deletedSnapshot.Count && System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_unmarked)[..deletedSnapshot.Count]
                    .SequenceEqual(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(deletedSnapshot)))
            {
                _unmarked.RemoveRange(0, deletedSnapshot.Count); // still the prefix the snapshot was taken from
            }
            else
            {
                // The store was reopened inside the transaction (after an I/O error, e.g. a full disk, or a runtime
                // quarantine), which dropped from the list the seqs the file no longer holds, so the snapshot is no
                // longer its prefix. Removing a prefix by count threw here and stopped the node (docs: durability case 4).
                var written = new HashSet<long>(deletedSnapshot);
                _unmarked.RemoveAll(written.Contains);
            }
            if (!_memoryComplete)
            {
                return;
            }

            if (_memory.Count + added.Count > MemoryOutboxLimit)
            {
                // A long broker outage: stop mirroring; the publisher reads LiteDB until the outbox is empty again. The
                // accepted events only in memory are dropped here (see the class remarks).
                _memoryComplete = false;
                _memory.Clear();
                return;
            }

            _memory.AddRange(added);
        }
    }

    /// <summary>Deletes the pending delivered entries from LiteDB in one (not fsynced) transaction. Under <c>_gate</c>.</summary>
    private void FlushDeliveredLocked()
    {
        var snapshot = UnmarkedSnapshot();
        if (snapshot.Count == 0)
        {
            return;
        }

        var deleted = 0;
        InTransaction(db =>
        {
            deleted = DeleteUnmarked(db.GetCollection(OutboxCollection), snapshot);
            return deleted > 0;
        });
        OutboxCommitted([], snapshot, deleted);
    }

    /// <summary>Checkpoints when the log is over <paramref name="maxBytes"/>; under <c>_gate</c>. Returns whether it did.</summary>
    private bool CheckpointIfLogOverLocked(long maxBytes)
    {
        if (_files is not { } files || files.LogLength <= maxBytes)
        {
            return false;
        }

        CheckpointLocked();
        return true;
    }

    private void CheckpointLocked()
    {
        Read(db =>
        {
            db.Checkpoint();
            return true;
        });
    }

    private T Read<T>(Func<LiteDatabase, T> body)
    {
        var db = Database();
        try
        {
            return body(db);
        }
        catch (IOException ex)
        {
            OnIoError(ex);
            throw;
        }
        catch (Exception ex) when (IsCorruption(ex))
        {
            QuarantineAtRuntime(ex);
            throw;
        }
    }

    private LiteDatabase Database()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_files is null)
        {
            OpenDatabase(allowQuarantine: false);
        }

        return _files!.Database;
    }

    private void OnIoError(IOException exception)
    {
        Log.StoreIoError(_logger, exception);
        CloseQuietly(_files);
        Volatile.Write(ref _files, null);
    }

    /// <summary>
    /// A call found the open database corrupt (<see cref="IsCorruption"/>): closes it without waiting for LiteDB's locks
    /// (the failed transaction may have left them held; <see cref="StoreFiles.Close"/> neither checkpoints nor locks),
    /// moves its files aside like <see cref="Open(string, TimeProvider, ILogger)"/> does, opens an empty database and
    /// raises <see cref="Quarantined"/>. Job and outbox sequence numbers continue from the moved file's, so outbox
    /// entries still held by the publisher never collide with new ones. Under <c>_gate</c>; the caller rethrows
    /// <paramref name="cause"/>. When moving or reopening fails, that is logged and the next call reopens (as after an
    /// I/O error).
    /// </summary>
    private void QuarantineAtRuntime(Exception cause)
    {
        var lost = new StoreQuarantine(string.Empty, _queuedCount, _offloadedCount, _inFlight.Count);
        var orphans = _pending.ToList();
        var nextJobSeq = Math.Max(_nextJobSeq, _reservedJobSeq);
        var nextOutboxSeq = Math.Max(_nextOutboxSeq, _reservedOutboxSeq);
        if (_files is { } broken)
        {
            StoreFiles.DefuseTransactions(broken.Database);
        }

        CloseQuietly(_files);
        Volatile.Write(ref _files, null);
        _runtimeQuarantines++;
        _inFlight.Clear();
        string target;
        try
        {
            target = Quarantine();
            OpenDatabase(allowQuarantine: false);
            var db = _files!.Database;

            // Every job accepted but not finished is gone with the moved file: its sender gets a final event anyway (one
            // outcome per job, DESIGN.md §4), FAILED storage_error, so it can resubmit. The new store keeps no record of
            // these ids, so a resubmission runs.
            var answers = new List<OutboxEntry>(orphans.Count);
            if (orphans.Count > 0)
            {
                var outbox = db.GetCollection(OutboxCollection);
                db.BeginTrans();
                foreach (var (id, (topic, correlation)) in orphans)
                {
                    var message = $"the job store was found corrupt while this job waited or ran and was moved to {target}; the job was lost with it: resubmit it";
                    answers.Add(AddOutbox(outbox, nextOutboxSeq++, id, topic, correlation, JobEvents.Error(id, JobStatuses.Failed, JobErrorCodes.Storage, message)));
                }

                db.Commit();
            }

            SaveMeta(db, nextJobSeq, nextOutboxSeq);
            _files.FlushLog();
            _nextJobSeq = _reservedJobSeq = nextJobSeq;
            _nextOutboxSeq = _reservedOutboxSeq = nextOutboxSeq;
            OutboxCommitted(answers, [], 0);
            var mark = new CommitMark(_committed.Gen + 1, Math.Max(_durable.OutboxSeq, nextOutboxSeq - 1));
            Volatile.Write(ref _committed, mark);
            Volatile.Write(ref _durable, mark);
            if (answers.Count > 0)
            {
                Log.LostJobsAnswered(_logger, answers.Count, string.Join(", ", answers.Take(20).Select(a => a.JobId)));
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or LiteException)
        {
            Log.RuntimeQuarantineFailed(_logger, ex, DatabasePath);
            CloseQuietly(_files);
            Volatile.Write(ref _files, null);
            return;
        }

        QuarantinedTo = target;
        lost = lost with { Directory = target };
        Log.StoreQuarantinedAtRuntime(_logger, cause, DatabasePath, target, lost.LostQueued, lost.LostOffloaded, lost.LostRunning);
        Quarantined?.Invoke(lost);
    }

    private void TryRollback(LiteDatabase db)
    {
        try
        {
            db.Rollback();
        }
        catch (Exception ex) when (ex is IOException or LiteException)
        {
            StoreFiles.DefuseTransactions(db);
            if (!IsCorruption(ex))
            {
                Log.StoreIoError(_logger, ex); // a corrupt file is reported by the quarantine that follows
            }
        }
    }

    private void CloseQuietly(StoreFiles? files)
    {
        if (files?.Close() is { } failure)
        {
            Log.StoreCloseFailed(_logger, failure);
        }
    }

    private StoreFiles CreateDatabase() =>
        StoreFiles.Open(DatabasePath, Path.Combine(_directory, LogFileName), OrdinalCollation, _logDecorator);

    /// <summary>Opens the database and loads counters; on an unreadable file, quarantines it and starts empty.</summary>
    private void OpenDatabase(bool allowQuarantine)
    {
        StoreFiles? files = null;
        try
        {
            CheckNotTruncated();
            files = CreateDatabase();
            LoadState(files.Database);
        }
        catch (Exception ex) when (allowQuarantine && IsUnreadableStore(ex))
        {
            CloseQuietly(files);
            files = null;
            var quarantine = Quarantine();
            Log.StoreQuarantined(_logger, ex, DatabasePath, quarantine);
            QuarantinedTo = quarantine;
        }
        catch
        {
            CloseQuietly(files);
            throw;
        }

        if (files is null)
        {
            try
            {
                files = CreateDatabase();
                LoadState(files.Database);
            }
            catch
            {
                CloseQuietly(files);
                throw;
            }
        }

        try
        {
            files.Database.CheckpointSize = 0; // no auto-checkpoint inside commits (see Checkpoint)
            files.FlushLog(); // whatever the log holds now is durable from here on
        }
        catch
        {
            CloseQuietly(files);
            throw;
        }

        var mark = new CommitMark(_committed.Gen + 1, _nextOutboxSeq - 1);
        Volatile.Write(ref _committed, mark);
        Volatile.Write(ref _durable, mark);
        Volatile.Write(ref _files, files);
        SyncDirectory(); // the data and log files may have just been created
    }

    /// <summary>
    /// Throws <see cref="UnreadableStoreException"/> when the data file is shorter than its own header says. LiteDB 5's
    /// header page (page 0) holds the last page id as a little-endian uint32 at byte 64 (LiteDB HeaderPage
    /// <c>P_LAST_PAGE_ID</c>), and every page is 8,192 bytes, so a complete file is at least (last id + 1) × 8,192 bytes.
    /// A file cut short (a hard reset during a copy, a full disk) otherwise opens without complaint when the missing
    /// pages hold only finished jobs or free pages, and fails later at the first insert ("Page type must be data page").
    /// Checked only when there is no write-ahead log to replay: pages still in the log may legitimately be missing.
    /// </summary>
    private void CheckNotTruncated()
    {
        const int PageSize = 8192;
        const int LastPageIdOffset = 64;
        var log = new FileInfo(Path.Combine(_directory, LogFileName));
        var data = new FileInfo(DatabasePath);
        if ((log.Exists && log.Length > 0) || !data.Exists || data.Length < PageSize)
        {
            return;
        }

        Span<byte> header = stackalloc byte[LastPageIdOffset + 4];
        using (var stream = new FileStream(DatabasePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            stream.ReadExactly(header);
        }

        var lastPageId = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(header[LastPageIdOffset..]);
        var expected = ((long)lastPageId + 1) * PageSize;
        if (lastPageId != uint.MaxValue && data.Length < expected)
        {
            throw new UnreadableStoreException(string.Create(CultureInfo.InvariantCulture,
                $"{DatabasePath} is {data.Length} bytes but its header says {expected} (last page {lastPageId}): the file was cut short."));
        }
    }

    /// <summary>
    /// Reads meta, every small collection and the jobs they reference, and walks the jobs <c>_id</c> index (forcing
    /// LiteDB to read those pages), and sets the counters.
    /// </summary>
    private void LoadState(LiteDatabase db)
    {
        var meta = db.GetCollection(MetaCollection).FindById(MetaId);
        var jobs = db.GetCollection(JobsCollection);
        if (meta is null)
        {
            if (jobs.Count() > 0)
            {
                throw new UnreadableStoreException("The meta document is missing but jobs exist.");
            }

            _nextJobSeq = 1;
            _nextOutboxSeq = 1;
            SaveMeta(db, _nextJobSeq, _nextOutboxSeq);
            _reservedJobSeq = _nextJobSeq;
            _reservedOutboxSeq = _nextOutboxSeq;
        }
        else
        {
            var schema = meta["schema"].AsInt32;
            if (schema > SchemaVersion)
            {
                throw new InvalidOperationException(
                    $"{DatabasePath} has schema version {schema}; this edgenode supports up to {SchemaVersion}.");
            }

            _nextJobSeq = meta["next_job_seq"].AsInt64;
            _nextOutboxSeq = meta["next_outbox_seq"].AsInt64;
            if (_nextJobSeq < 1 || _nextOutboxSeq < 1)
            {
                throw new UnreadableStoreException("The meta document has invalid sequence numbers.");
            }

            // Numbers below the stored ones may have been used (reserved blocks): continue from them, leaving a gap.
            _reservedJobSeq = _nextJobSeq;
            _reservedOutboxSeq = _nextOutboxSeq;
        }

        // Walks the whole jobs _id index (index pages only, no document): a corrupt index page is found here rather than
        // by the first lookup of an old id while running. Measured with 20,000 finished jobs (35 MB file): open took
        // 40-120 ms instead of ~5 ms. Reading every document too took 0.5-1.6 s and loaded the whole file into LiteDB's
        // page cache, which never shrinks, so a corrupt data page is left to the runtime quarantine.
        _ = jobs.Count();

        var queued = 0;
        var bytes = 0L;
        var pending = new Dictionary<string, (string Topic, byte[]? Correlation)>(StringComparer.Ordinal);
        void Pending(BsonDocument? job, string missing)
        {
            _ = job ?? throw new UnreadableStoreException(missing);
            pending[job["_id"].AsString] = (job["reply_topic"].AsString, NullableBinary(job["correlation"]));
        }

        foreach (var entry in db.GetCollection(QueueCollection).FindAll())
        {
            Pending(jobs.FindById(entry["job_id"].AsString), "A queued job document is missing.");
            queued++;
            bytes += entry["size"].AsInt32;
        }

        var running = 0;
        foreach (var entry in db.GetCollection(RunningCollection).FindAll())
        {
            Pending(jobs.FindById(entry["_id"].AsString), "A running job document is missing.");
            running++;
        }

        var offloaded = 0;
        foreach (var entry in db.GetCollection(OffloadedCollection).FindAll())
        {
            Pending(jobs.FindById(entry["_id"].AsString), "An offloaded job document is missing.");
            offloaded++;
        }

        var outbox = 0;
        var stored = new HashSet<long>();
        foreach (var entry in db.GetCollection(OutboxCollection).FindAll())
        {
            stored.Add(ToOutboxEntry(entry).Seq);
            outbox++;
        }

        _pending = pending;
        _queuedCount = queued;
        _queuedBytes = bytes;
        _runningCount = running;
        _offloadedCount = offloaded;
        _outboxCount = outbox;
        lock (_outboxGate)
        {
            // A reopen after an I/O error (disk full) keeps the deliveries this process already made: those entries are
            // still in the file but must not be published again while the disk stays full (they were, every cycle, for
            // as long as the outage lasted). Only seqs the file no longer holds (their deletion did commit) are dropped.
            _unmarked.RemoveAll(seq => !stored.Contains(seq));
            _memory.Clear();
            _memoryComplete = outbox == 0;
        }
    }

    /// <summary>
    /// True for failures that mean the file's content is unreadable: LiteDB's own checks (<see cref="LiteException"/>),
    /// the store's consistency checks, or anything else thrown from inside LiteDB while it parsed garbage (e.g. an
    /// <see cref="ArgumentOutOfRangeException"/> for a random header date). False for environmental errors
    /// (permissions, disk, memory) and for errors raised by this class's own code, which must not move data aside.
    /// </summary>
    private static bool IsUnreadableStore(Exception exception) => exception switch
    {
        UnreadableStoreException or LiteException or EndOfStreamException => true,
        IOException or UnauthorizedAccessException or OutOfMemoryException => false,
        _ => new System.Diagnostics.StackTrace(exception, fNeedFileInfo: false).GetFrames()
            .Any(frame => frame.GetMethod()?.Module.Assembly == typeof(LiteDatabase).Assembly),
    };

    /// <summary>Moves <c>jobs.db</c>, <c>jobs-log.db</c> and any other <c>jobs-*</c> file together into a timestamped folder.</summary>
    private string Quarantine()
    {
        var stamp = _time.GetUtcNow().UtcDateTime.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture);
        var target = Path.Combine(_directory, QuarantineDirectoryName, "jobs-" + stamp);
        for (var n = 1; Directory.Exists(target); n++)
        {
            target = Path.Combine(_directory, QuarantineDirectoryName, $"jobs-{stamp}-{n}");
        }

        Directory.CreateDirectory(target);
        foreach (var file in Directory.EnumerateFiles(_directory, "jobs*").ToList())
        {
            var name = Path.GetFileName(file);
            if (name == DatabaseFileName || name.StartsWith("jobs-", StringComparison.Ordinal))
            {
                File.Move(file, Path.Combine(target, name));
            }
        }

        SyncDirectory(target);
        SyncDirectory();
        return target;
    }

    private void SyncDirectory(string? directory = null)
    {
        directory ??= _directory;
        var errno = DirectorySync.Flush(directory);
        if (errno != 0)
        {
            Log.DirectorySyncFailed(_logger, directory, errno);
        }
    }

    /// <summary>
    /// Inside a transaction that uses sequence numbers below <paramref name="nextJobSeq"/> and
    /// <paramref name="nextOutboxSeq"/>: when they pass the block reserved in the meta document, reserves the next block
    /// of <see cref="SeqReservation"/> (writes meta). Most commits then write no meta page (one of ~12 pages per commit);
    /// after a restart numbering continues from the reserved bound, so it still only increases. Returns the new
    /// reservation to apply with <see cref="Reserved"/> once the transaction committed, or null.
    /// </summary>
    private (long Job, long Outbox)? Reserve(LiteDatabase db, long nextJobSeq, long nextOutboxSeq)
    {
        if (nextJobSeq <= _reservedJobSeq && nextOutboxSeq <= _reservedOutboxSeq)
        {
            return null;
        }

        var job = Math.Max(_reservedJobSeq, nextJobSeq + SeqReservation);
        var outbox = Math.Max(_reservedOutboxSeq, nextOutboxSeq + SeqReservation);
        SaveMeta(db, job, outbox);
        return (job, outbox);
    }

    private void Reserved((long Job, long Outbox)? reserved)
    {
        if (reserved is { } r)
        {
            _reservedJobSeq = r.Job;
            _reservedOutboxSeq = r.Outbox;
        }
    }

    private static void SaveMeta(LiteDatabase db, long nextJobSeq, long nextOutboxSeq) =>
        db.GetCollection(MetaCollection).Upsert(new BsonDocument
        {
            ["_id"] = MetaId,
            ["schema"] = SchemaVersion,
            ["next_job_seq"] = nextJobSeq,
            ["next_outbox_seq"] = nextOutboxSeq,
        });

    /// <summary>Queue order key: ascending = priority 100 first, then lower seq (earlier acceptance) first.</summary>
    internal static long QueueKey(int priority, long seq)
    {
        var rank = PriorityLimit - Math.Clamp(priority, -PriorityLimit, PriorityLimit); // 0..200, fits 8 bits
        return ((long)rank << SeqBits) | seq;
    }

    private static int RequestBytes(JobRequest job)
    {
        var bytes = Encoding.UTF8.GetByteCount(job.Id) + Encoding.UTF8.GetByteCount(job.Prompt);
        foreach (var stop in job.Stop)
        {
            bytes += Encoding.UTF8.GetByteCount(stop);
        }

        return bytes;
    }

    private static BsonDocument QueueDocument(long key, string jobId, int size) => new()
    {
        ["_id"] = key,
        ["job_id"] = jobId,
        ["size"] = size,
    };

    private static BsonDocument RunningDocument(string jobId, long key, int size) => new()
    {
        ["_id"] = jobId,
        ["key"] = key,
        ["size"] = size,
    };

    private static BsonDocument OutboxDocument(long seq, string jobId, string topic, byte[]? correlation, byte[] payload) => new()
    {
        ["_id"] = seq,
        ["job_id"] = jobId,
        ["topic"] = topic,
        ["correlation"] = correlation is null ? BsonValue.Null : new BsonValue(correlation),
        ["payload"] = payload,
    };

    /// <summary>Inserts one outbox document and returns the entry it stores.</summary>
    private static OutboxEntry AddOutbox(ILiteCollection<BsonDocument> outbox, long seq, string jobId, string topic, byte[]? correlation, byte[] payload)
    {
        outbox.Insert(OutboxDocument(seq, jobId, topic, correlation, payload));
        return new OutboxEntry(seq, jobId, topic, correlation, payload);
    }

    private static OutboxEntry ToOutboxEntry(BsonDocument doc) => new(
        doc["_id"].AsInt64,
        doc["job_id"].AsString,
        doc["topic"].AsString,
        NullableBinary(doc["correlation"]),
        doc["payload"].AsBinary ?? throw new UnreadableStoreException("An outbox entry has no payload."));

    private static BsonDocument JobDocument(JobRequest job, long seq, IngestItem item, DateTimeOffset acceptedAt) => new()
    {
        ["_id"] = job.Id,
        ["seq"] = seq,
        ["status"] = JobStatuses.Queued,
        ["request"] = new BsonDocument
        {
            ["id_assigned"] = job.IdAssigned,
            ["prompt"] = job.Prompt,
            ["max_new_tokens"] = job.MaxNewTokens,
            ["temperature"] = (double)job.Temperature,
            ["top_k"] = job.TopK,
            ["top_p"] = (double)job.TopP,
            ["repetition_penalty"] = (double)job.RepetitionPenalty,
            ["seed"] = job.Seed is { } seed ? new BsonValue(seed) : BsonValue.Null,
            ["stop"] = new BsonArray(job.Stop.Select(s => new BsonValue(s))),
            ["stream"] = job.Stream,
            ["deadline_ms"] = job.DeadlineMs is { } deadline ? new BsonValue(deadline) : BsonValue.Null,
            ["priority"] = job.Priority,
            ["reply_to"] = job.ReplyTo is { } replyTo ? new BsonValue(replyTo) : BsonValue.Null,
        },
        ["route"] = item.Offload ? "relay" : "local",
        ["reply_topic"] = item.ReplyTopic,
        ["correlation"] = item.CorrelationData is null ? BsonValue.Null : new BsonValue(item.CorrelationData),
        ["received_at"] = item.ReceivedAt.UtcTicks,
        ["accepted_at"] = acceptedAt.UtcTicks,
        ["started_at"] = BsonValue.Null,
        ["finished_at"] = BsonValue.Null,
        ["attempts"] = 0,
        ["final_event"] = BsonValue.Null,
    };

    private static JobRecord ToRecord(BsonDocument doc)
    {
        var id = doc["_id"].AsString;
        var request = doc["request"].AsDocument;
        return new JobRecord
        {
            Id = id,
            Seq = doc["seq"].AsInt64,
            Status = doc["status"].AsString,
            // Documents written before the field existed: their route is what their status still says, if anything.
            AcceptedRoute = doc.TryGetValue("route", out var route) && route.IsString ? route.AsString
                : doc["status"].AsString == JobStatuses.Offloaded ? "relay" : "local",
            Request = new JobRequest
            {
                Id = id,
                IdAssigned = request["id_assigned"].AsBoolean,
                Prompt = request["prompt"].AsString,
                MaxNewTokens = request["max_new_tokens"].AsInt32,
                Temperature = (float)request["temperature"].AsDouble,
                TopK = request["top_k"].AsInt32,
                TopP = (float)request["top_p"].AsDouble,
                RepetitionPenalty = (float)request["repetition_penalty"].AsDouble,
                Seed = request["seed"].IsNull ? null : request["seed"].AsInt64,
                Stop = [.. request["stop"].AsArray.Select(s => s.AsString)],
                Stream = request["stream"].AsBoolean,
                DeadlineMs = request["deadline_ms"].IsNull ? null : request["deadline_ms"].AsInt32,
                Priority = request["priority"].AsInt32,
                ReplyTo = request["reply_to"].IsNull ? null : request["reply_to"].AsString,
            },
            ReplyTopic = doc["reply_topic"].AsString,
            CorrelationData = NullableBinary(doc["correlation"]),
            ReceivedAt = Utc(doc["received_at"])!.Value,
            AcceptedAt = Utc(doc["accepted_at"])!.Value,
            StartedAt = Utc(doc["started_at"]),
            FinishedAt = Utc(doc["finished_at"]),
            Attempts = doc["attempts"].AsInt32,
            FinalEvent = NullableBinary(doc["final_event"]),
        };
    }

    private static DateTimeOffset? Utc(BsonValue ticks) =>
        ticks.IsNull ? null : new DateTimeOffset(ticks.AsInt64, TimeSpan.Zero);

    private static byte[]? NullableBinary(BsonValue value) => value.IsNull ? null : value.AsBinary;

    /// <summary>A point in the commit order: commit generation <paramref name="Gen"/>, outbox written up to <paramref name="OutboxSeq"/>.</summary>
    private sealed record CommitMark(long Gen, long OutboxSeq);

    /// <summary>The store's own consistency checks failed while opening: treated like a LiteDB read error.</summary>
    private sealed class UnreadableStoreException(string message) : Exception(message);
}
