using LiteDB;
using LiteDB.Engine;

namespace EdgeNode.Daemon.Queue;

/// <summary>
/// One open LiteDB database over file streams owned by the store (<c>jobs.db</c> and <c>jobs-log.db</c>), rather
/// than LiteDB's own file handling.
/// </summary>
/// <remarks>
/// Why own the streams (each found by experiment with LiteDB 5.0.21 on Linux):
/// <list type="bullet">
/// <item>After a failed write (ENOSPC) LiteDB can neither roll the transaction back nor release it: its
/// <c>Dispose</c> leaves that transaction's log reader open, and LiteDB's next open takes an exclusive flock on
/// <c>jobs-log.db</c>, so the store could not reopen until the process restarted (cases/durability.md 4 wants it to
/// recover when space returns). Here every file descriptor belongs to the two streams below, which
/// <see cref="Dispose"/> always closes, and they take only shared flocks (the exclusive lock is
/// <c>edgenode.lock</c>).</item>
/// <item>The log is fsynced through the very handle LiteDB wrote with (<see cref="FlushLog"/>), after the commits
/// the daemon acknowledges on; LiteDB itself never fsyncs the log (notes/litedb.md).</item>
/// <item>LiteDB fsyncs the data file before it truncates the log in a checkpoint only for a
/// <see cref="FileStream"/>; with a provided stream it calls <see cref="Stream.Flush()"/>, which
/// <see cref="DurableStream"/> turns into an fsync for the data file.</item>
/// </list>
/// </remarks>
internal sealed class StoreFiles : IDisposable
{
    private readonly FileStream _data;
    private readonly FileStream _log;

    private StoreFiles(FileStream data, FileStream log, LiteDatabase database)
    {
        _data = data;
        _log = log;
        Database = database;
    }

    /// <summary>The database; disposed with this object.</summary>
    public LiteDatabase Database { get; }

    /// <summary>Current length of <c>jobs-log.db</c> in bytes (0 after a checkpoint).</summary>
    public long LogLength => _log.Length;

    /// <summary>Opens (or creates) the data and log files and the LiteDB engine over them.</summary>
    /// <param name="dataPath">Path of <c>jobs.db</c>.</param>
    /// <param name="logPath">Path of <c>jobs-log.db</c>.</param>
    /// <param name="collation">Used when the database is created.</param>
    /// <param name="logDecorator">Test hook: wraps the log stream LiteDB writes to (fault injection, e.g. ENOSPC).</param>
    /// <exception cref="IOException">A file cannot be opened.</exception>
    /// <exception cref="LiteException">The data file is not a readable LiteDB database.</exception>
    public static StoreFiles Open(string dataPath, string logPath, Collation collation, Func<Stream, Stream>? logDecorator = null)
    {
        FileStream? data = null;
        FileStream? log = null;
        try
        {
            data = OpenFile(dataPath);
            log = OpenFile(logPath);
            var engine = new LiteEngine(new EngineSettings
            {
                DataStream = new DurableStream(data, fsyncOnFlush: true),
                LogStream = logDecorator is null
                    ? new DurableStream(log, fsyncOnFlush: false)
                    : logDecorator(new DurableStream(log, fsyncOnFlush: false)),
                TempStream = new MemoryStream(),
                Collation = collation,
                AutoRebuild = false, // drops unreadable documents silently (notes/litedb.md); the store quarantines instead
                Upgrade = false,
            });
            return new StoreFiles(data, log, new LiteDatabase(engine, mapper: null, disposeOnClose: true));
        }
        catch
        {
            data?.Dispose();
            log?.Dispose();
            throw;
        }
    }

    /// <summary>fsync(2) of <c>jobs-log.db</c>: every commit written so far survives a power loss.</summary>
    /// <exception cref="IOException">The fsync failed.</exception>
    public void FlushLog() => _log.Flush(flushToDisk: true);

    /// <summary>Disposes the database (LiteDB checkpoints on a clean dispose), then always closes both files.</summary>
    /// <returns>The exception LiteDB threw while disposing, if any (the files are closed regardless).</returns>
    public Exception? Close()
    {
        Exception? failure = null;
        DefuseTransactions(Database);
        try
        {
            Database.Dispose();
        }
        catch (Exception ex) when (ex is IOException or LiteException or ObjectDisposedException)
        {
            failure = ex;
        }

        _data.Dispose();
        _log.Dispose();
        return failure;
    }

    /// <summary>
    /// LiteDB 5.0.21 leaves a transaction undisposed when its rollback fails (after ENOSPC, or LiteDB issue 2586:
    /// "discarded page must be writable"); that transaction's finalizer later repeats the failing rollback on the
    /// finalizer thread, where the exception terminates the process. Before a broken database is dropped (and after
    /// a failed rollback) its transactions are told not to finalize: the files are closed by us anyway, and the
    /// data was never committed. Reflection on LiteDB's private fields: if they change, nothing is done.
    /// </summary>
#pragma warning disable CA1816 // deliberately suppressing the finalizer of LiteDB's own objects (see summary)
    public static void DefuseTransactions(LiteDatabase database)
    {
        const System.Reflection.BindingFlags Private = System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance;
        try
        {
            var engine = typeof(LiteDatabase).GetField("_engine", Private)?.GetValue(database);
            var monitor = engine?.GetType().GetField("_monitor", Private)?.GetValue(engine);
            if (monitor is null)
            {
                return;
            }

            if (monitor.GetType().GetField("_transactions", Private)?.GetValue(monitor) is System.Collections.IDictionary active)
            {
                lock (active)
                {
                    foreach (var transaction in active.Values)
                    {
                        GC.SuppressFinalize(transaction!);
                    }
                }
            }

            // The calling thread's transaction (a failed rollback may have removed it from the dictionary).
            var slot = monitor.GetType().GetField("_slot", Private)?.GetValue(monitor);
            if (slot?.GetType().GetProperty("Value")?.GetValue(slot) is { } current)
            {
                GC.SuppressFinalize(current);
            }
        }
        catch (Exception ex) when (ex is System.Reflection.TargetException or MemberAccessException or InvalidOperationException or ObjectDisposedException)
        {
            // Unknown LiteDB internals: nothing to defuse.
        }
    }
#pragma warning restore CA1816

    /// <summary>Same as <see cref="Close"/>, ignoring errors.</summary>
    public void Dispose() => Close();

    private static FileStream OpenFile(string path) =>
        new(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete,
            bufferSize: 0, FileOptions.RandomAccess);

    /// <summary>
    /// Delegates to a <see cref="FileStream"/>; <see cref="Flush"/> is an fsync when <c>fsyncOnFlush</c>.
    /// Not disposed by LiteDB (a provided stream is never closed by its <c>StreamFactory</c>).
    /// </summary>
    private sealed class DurableStream(FileStream inner, bool fsyncOnFlush) : Stream
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

        public override void Flush() => inner.Flush(flushToDisk: fsyncOnFlush);

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override int Read(Span<byte> buffer) => inner.Read(buffer);

        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

        public override void SetLength(long value) => inner.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);
    }
}
