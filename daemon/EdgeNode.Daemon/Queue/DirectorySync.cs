using System.Runtime.InteropServices;

namespace EdgeNode.Daemon.Queue;

/// <summary>
/// fsync(2) of a directory, so that newly created files (the LiteDB data and log files) survive a power loss
/// (notes/litedb.md, "fsync the directory once after creating files"). .NET cannot open a directory as a file,
/// hence the libc calls. A no-op on Windows, where NTFS metadata is journaled.
/// </summary>
internal static class DirectorySync
{
    private const int ReadOnly = 0; // O_RDONLY

    /// <summary>Flushes the directory's entries to disk.</summary>
    /// <returns>0 on success (or on Windows), else the errno of the failed call.</returns>
    public static int Flush(string directoryPath)
    {
        if (OperatingSystem.IsWindows())
        {
            return 0;
        }

        var fd = NativeMethods.open(directoryPath, ReadOnly);
        if (fd < 0)
        {
            return Marshal.GetLastPInvokeError();
        }

        try
        {
            return NativeMethods.fsync(fd) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        finally
        {
            _ = NativeMethods.close(fd);
        }
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int close(int fd);
    }
}
