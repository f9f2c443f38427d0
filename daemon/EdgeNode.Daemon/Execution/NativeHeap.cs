using System.Runtime.InteropServices;

namespace EdgeNode.Daemon.Execution;

/// <summary>
/// Gives the C heap's free pages back to the kernel after a model load. Loading an ONNX model frees a lot of
/// transient native memory (ONNX Runtime's parsed protobuf, constant-folded copies of initializers, the pre-packing
/// source buffers; ~13 MB for the tiny model, ~250 MB for small INT8). glibc keeps freed memory in its heap, and
/// whether it ever shrinks depends on which allocation happens to sit at the top of the heap: measured idle RSS with the
/// tiny model was 154-158 MB or 175-181 MB from run to run (docs/BENCHMARKS.md "Idle memory"). <c>malloc_trim(0)</c>
/// returns every free page, not only the top of the heap (glibc manual, "Memory allocation tunables" / malloc_trim(3)).
/// </summary>
/// <remarks>Linux with glibc only; elsewhere (musl, macOS, Windows) <see cref="Trim"/> does nothing and returns false.</remarks>
internal static class NativeHeap
{
    /// <summary>Calls glibc's <c>malloc_trim(0)</c>: takes a few ms, safe at any time (glibc locks each arena).</summary>
    /// <returns>True when glibc gave memory back; false when there was none to give or the C library has no malloc_trim.</returns>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            return NativeMethods.MallocTrim(0) != 0;
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            return false; // musl (Alpine) has no malloc_trim
        }
    }

    private static class NativeMethods
    {
        [DllImport("libc", EntryPoint = "malloc_trim", ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int MallocTrim(nuint pad);
    }
}
