using System.Text.RegularExpressions;
using EdgeNode.TestSupport;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace EdgeNode.Packaging.Tests;

/// <summary>Paths in the checkout under test, and small process helpers for the packaging tools.</summary>
internal static partial class Repo
{
    /// <summary>The checkout's root: the nearest directory above the test binaries holding EdgeNode.sln.</summary>
    public static string Root { get; } = FindRoot();

    public static string Path(string relative) => System.IO.Path.Combine(Root, relative);

    /// <summary>The product version: &lt;Version&gt; in Directory.Build.props.</summary>
    public static string Version { get; } = VersionPattern().Match(File.ReadAllText(Path("Directory.Build.props"))).Groups[1].Value;

    /// <summary>Runs a program to completion; returns its exit code and every output line (stdout and stderr).</summary>
    public static async Task<(int ExitCode, IReadOnlyList<string> Lines)> RunAsync(string fileName, IEnumerable<string> args, TimeSpan timeout,
        IDictionary<string, string>? environment = null)
    {
        await using var p = ProcessRunner.Start(fileName, args, environment);
        var code = await p.WaitForExitAsync(timeout);
        return (code, p.Lines.ToList());
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "EdgeNode.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("EdgeNode.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex("<Version>([^<]+)</Version>")]
    private static partial Regex VersionPattern();
}

/// <summary>Packaging tests build with the SDK and run system tools: one at a time.</summary>
[CollectionDefinition("Packaging", DisableParallelization = true)]
public sealed class PackagingCollection;
