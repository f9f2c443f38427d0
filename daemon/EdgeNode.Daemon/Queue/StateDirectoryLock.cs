using System.Globalization;
using System.Text;

namespace EdgeNode.Daemon.Queue;

/// <summary>
/// The exclusive lock on <c>{stateDirectory}/edgenode.lock</c>, held for the life of the store.
/// </summary>
/// <remarks>
/// LiteDB's own file sharing does not stop a second process on Linux (LiteDB issue 2163, notes/litedb.md),
/// so the store takes this lock first. <see cref="FileShare.None"/> makes .NET take an advisory
/// <c>flock(LOCK_EX | LOCK_NB)</c> on Unix (the same lock <c>flock(1)</c> uses), per open file description: a second
/// process, and a second opener in this process, both fail. The lock disappears with the process, so a crash
/// never leaves a stale lock. Setting <c>DOTNET_SYSTEM_IO_DISABLEFILELOCKING</c> disables it: do not.
/// The file holds the owner's pid for operators (<c>cat edgenode.lock</c>).
/// </remarks>
internal sealed class StateDirectoryLock : IDisposable
{
    // errno EWOULDBLOCK (Linux 11, macOS 35) surfaces as the HResult of the IOException on Unix;
    // ERROR_SHARING_VIOLATION / ERROR_LOCK_VIOLATION on Windows.
    private static readonly int[] LockedHResults = [11, 35, unchecked((int)0x80070020), unchecked((int)0x80070021)];

    private readonly FileStream _stream;

    private StateDirectoryLock(string path, FileStream stream)
    {
        Path = path;
        _stream = stream;
    }

    /// <summary>The lock file's path.</summary>
    public string Path { get; }

    /// <summary>Takes the lock or fails at once (no waiting).</summary>
    /// <exception cref="StoreLockedException">Another process (or opener) holds the lock.</exception>
    /// <exception cref="IOException">The lock file cannot be created or written.</exception>
    public static StateDirectoryLock Acquire(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
        }
        catch (IOException ex) when (Array.IndexOf(LockedHResults, ex.HResult) >= 0)
        {
            throw new StoreLockedException(path, ex);
        }

        try
        {
            var pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
            stream.SetLength(0);
            stream.Write(pid);
            stream.Flush();
            return new StateDirectoryLock(path, stream);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Releases the lock (the file stays; its presence means nothing without the lock).</summary>
    public void Dispose() => _stream.Dispose();
}
