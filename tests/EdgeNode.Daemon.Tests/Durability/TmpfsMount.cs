using System.Diagnostics;
using System.Globalization;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// A real, small tmpfs (<c>mount -t tmpfs -o size=N tmpfs DIR</c>) for disk-full tests: writes past its size fail with
/// ENOSPC like on a full SD card. Needs root with CAP_SYS_ADMIN (developers' machines and CI run as root); without it
/// <see cref="Create"/> throws, so the test fails and says why instead of passing without having filled a disk.
/// </summary>
internal sealed class TmpfsMount : IDisposable
{
    private TmpfsMount(string path) => Path = path;

    /// <summary>The mount point (an empty directory under the system temp folder).</summary>
    public string Path { get; }

    /// <summary>Mounts a tmpfs of <paramref name="sizeMiB"/> MiB on a new temporary directory.</summary>
    /// <exception cref="InvalidOperationException">mount failed (not root, no CAP_SYS_ADMIN, no tmpfs); the message has its output.</exception>
    public static TmpfsMount Create(int sizeMiB)
    {
        var path = Directory.CreateTempSubdirectory("edgenode-tmpfs-").FullName;
        var (code, output) = Run("mount", "-t", "tmpfs", "-o", "size=" + sizeMiB.ToString(CultureInfo.InvariantCulture) + "m,mode=0700", "tmpfs", path);
        if (code != 0)
        {
            Directory.Delete(path);
            throw new InvalidOperationException(
                $"This test needs a real small filesystem: 'mount -t tmpfs -o size={sizeMiB}m tmpfs {path}' failed with exit code {code} "
                + $"(run the tests as root with CAP_SYS_ADMIN, as CI does): {output}");
        }

        return new TmpfsMount(path);
    }

    /// <summary>
    /// Writes <c>filler</c> in the mount until the filesystem refuses with ENOSPC (64 KiB, then 4 KiB, then 512-byte
    /// writes, unbuffered), and returns its path. Deleting it gives the space back.
    /// </summary>
    public string Fill()
    {
        var filler = System.IO.Path.Combine(Path, "filler");
        using var stream = new FileStream(filler, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
        foreach (var size in new[] { 64 * 1024, 4096, 512 })
        {
            var chunk = new byte[size];
            try
            {
                while (true)
                {
                    stream.Write(chunk);
                }
            }
            catch (IOException ex) when (ex.HResult == 28)
            {
                // ENOSPC at this chunk size: go on with smaller chunks.
            }
        }

        return filler;
    }

    public void Dispose()
    {
        // Lazy: a node that is still closing its files must not make the unmount fail.
        _ = Run("umount", "-l", Path);
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        try
        {
            using var process = Process.Start(info)!;
            var output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, output.Trim());
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return (-1, ex.Message);
        }
    }
}
