namespace EdgeNode.TestSupport;

/// <summary>
/// A unique, empty directory under <c>{Path.GetTempPath()}/edgenode-tests</c>, deleted with its contents
/// on dispose. For tests that need real files (LiteDB stores, models, lock files).
/// </summary>
public sealed class TempDirectory : IDisposable
{
    /// <summary>Creates the directory.</summary>
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "edgenode-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    /// <summary>The absolute path of the directory.</summary>
    public string Path { get; }

    /// <summary>Joins <paramref name="relativePath"/> to <see cref="Path"/> (does not create anything).</summary>
    public string Combine(string relativePath) => System.IO.Path.Combine(Path, relativePath);

    /// <summary>Deletes the directory and everything in it; a directory already gone is fine.</summary>
    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
            // Already deleted by the test.
        }
        catch (IOException)
        {
            // A file still held open by a killed child process; the temp folder is cleaned by the OS.
        }
    }
}
