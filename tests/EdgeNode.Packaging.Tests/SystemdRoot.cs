namespace EdgeNode.Packaging.Tests;

/// <summary>
/// A directory tree for <c>systemd-analyze verify --root</c>: a copy of the host's unit directory (so
/// sysinit.target, network-online.target... resolve inside the root) plus the units under test.
/// <c>verify</c> also checks that ExecStart's program exists and is executable inside the root.
/// </summary>
internal static class SystemdRoot
{
    public const string UnitDirectory = "lib/systemd/system";

    /// <summary>Copies the host's units from /lib/systemd/system into <paramref name="root"/> (not over files already there).</summary>
    public static void AddHostUnits(string root)
    {
        var target = Path.Combine(root, UnitDirectory);
        Directory.CreateDirectory(target);
        foreach (var file in Directory.EnumerateFiles("/lib/systemd/system"))
        {
            var info = new FileInfo(file);
            var dest = Path.Combine(target, info.Name);
            if (info.LinkTarget is null && !File.Exists(dest))
            {
                File.Copy(file, dest);
            }
        }
    }

    /// <summary>Runs <c>systemd-analyze verify --root=ROOT</c> on units given by their path inside the root.</summary>
    public static Task<(int ExitCode, IReadOnlyList<string> Lines)> VerifyAsync(string root, params string[] units) =>
        Repo.RunAsync("systemd-analyze", ["verify", "--root=" + root, .. units.Select(u => "/" + UnitDirectory + "/" + u)], TimeSpan.FromSeconds(60));

    /// <summary>
    /// The overall exposure of <c>systemd-analyze security --offline=true</c> (0 = fully sandboxed, 10 = exposed),
    /// from its last line "→ Overall exposure level for NAME: 1.4 OK".
    /// </summary>
    public static async Task<(double Exposure, IReadOnlyList<string> Lines)> ExposureAsync(IEnumerable<string> args)
    {
        var (code, lines) = await Repo.RunAsync("systemd-analyze", ["security", "--offline=true", "--no-pager", .. args], TimeSpan.FromSeconds(60));
        Assert.True(code == 0, string.Join('\n', lines));
        var overall = lines.Single(l => l.Contains("Overall exposure level for", StringComparison.Ordinal));
        var figure = overall[(overall.IndexOf(": ", StringComparison.Ordinal) + 2)..].Split(' ')[0];
        return (double.Parse(figure, System.Globalization.CultureInfo.InvariantCulture), lines);
    }
}
