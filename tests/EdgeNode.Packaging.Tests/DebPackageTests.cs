using EdgeNode.TestSupport;

namespace EdgeNode.Packaging.Tests;

/// <summary>Runs packaging/build-deb.sh once for both architectures into a temporary directory (a few minutes).</summary>
public sealed class DebPackagesFixture : IAsyncLifetime, IDisposable
{
    private readonly TempDirectory _out = new();

    public async Task InitializeAsync()
    {
        var (code, lines) = await Repo.RunAsync(Repo.Path("packaging/build-deb.sh"), ["--arch", "all", "--out", _out.Path], TimeSpan.FromMinutes(15),
            new Dictionary<string, string>
            {
                // No build servers left behind by the test run.
                ["MSBUILDDISABLENODEREUSE"] = "1",
                ["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0",
                ["DOTNET_NOLOGO"] = "1",
            });
        BuildExitCode = code;
        BuildOutput = lines;
    }

    public int BuildExitCode { get; private set; } = -1;

    public IReadOnlyList<string> BuildOutput { get; private set; } = [];

    public string Deb(string arch) => Path.Combine(_out.Path, $"edgenode_{Repo.Version}_{arch}.deb");

    public Task DisposeAsync()
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose() => _out.Dispose();
}

/// <summary>The .deb files as dpkg sees them (dpkg-deb -I/-c/-f, dpkg -x), and the amd64 one run from an unpacked tree.</summary>
[Collection("Packaging")]
public sealed class DebPackageTests(DebPackagesFixture packages) : IClassFixture<DebPackagesFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [Theory]
    [InlineData("amd64")]
    [InlineData("arm64")]
    public async Task BuildDeb_ControlFields_ArchitectureVersionAndDependencies(string arch)
    {
        Assert.True(packages.BuildExitCode == 0, string.Join('\n', packages.BuildOutput));
        Assert.Equal(arch, await FieldAsync(arch, "Architecture"));
        Assert.Equal(Repo.Version, await FieldAsync(arch, "Version"));
        Assert.Equal("edgenode", await FieldAsync(arch, "Package"));
        Assert.Contains("libssl3 | libssl1.1", await FieldAsync(arch, "Depends"), StringComparison.Ordinal);
        Assert.True(int.Parse(await FieldAsync(arch, "Installed-Size"), System.Globalization.CultureInfo.InvariantCulture) > 10_000);
    }

    [Theory]
    [InlineData("amd64", "x86-64")]
    [InlineData("arm64", "ARM aarch64")]
    public async Task BuildDeb_Contents_PathsModesAndNativeLibrariesForTheArchitecture(string arch, string elfMachine)
    {
        Assert.True(packages.BuildExitCode == 0, string.Join('\n', packages.BuildOutput));
        var (code, lines) = await Repo.RunAsync("dpkg-deb", ["-c", packages.Deb(arch)], Timeout);
        Assert.Equal(0, code);
        var entries = lines.Select(ParseEntry).ToDictionary(e => e.Path);

        Assert.StartsWith("-rwxr-xr-x root/root", entries["./usr/lib/edgenode/edgenode"].Line, StringComparison.Ordinal);
        Assert.Equal("../lib/edgenode/edgenode", entries["./usr/bin/edgenode"].LinkTarget);
        Assert.Contains("./usr/lib/edgenode/libonnxruntime.so", entries.Keys);
        Assert.Contains("./usr/lib/edgenode/appsettings.json", entries.Keys);
        Assert.StartsWith("-rw-r--r-- root/root", entries["./lib/systemd/system/edgenode.service"].Line, StringComparison.Ordinal);
        Assert.StartsWith("-rw-r--r-- root/root", entries["./etc/edgenode/edgenode.json"].Line, StringComparison.Ordinal);
        Assert.Contains("./usr/share/doc/edgenode/gpu.conf.example", entries.Keys);
        // Every file is owned by root and nothing is left only owner-readable.
        Assert.All(entries.Values, e => Assert.Contains(" root/root ", e.Line, StringComparison.Ordinal));
        Assert.All(entries.Values.Where(e => e.Line[0] == '-'), e => Assert.Equal('r', e.Line[7]));
        // No state, no debug symbols shipped.
        Assert.DoesNotContain(entries.Keys, p => p.StartsWith("./var/", StringComparison.Ordinal) || p.EndsWith(".pdb", StringComparison.Ordinal));

        using var root = new TempDirectory();
        Assert.Equal(0, (await Repo.RunAsync("dpkg", ["-x", packages.Deb(arch), root.Path], Timeout)).ExitCode);
        foreach (var binary in new[] { "usr/lib/edgenode/edgenode", "usr/lib/edgenode/libonnxruntime.so", "usr/lib/edgenode/libcoreclr.so" })
        {
            var (_, file) = await Repo.RunAsync("file", ["-b", root.Combine(binary)], Timeout);
            Assert.Contains(elfMachine, string.Join(' ', file), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("amd64")]
    [InlineData("arm64")]
    public async Task BuildDeb_ControlArea_ConffileAndMaintainerScripts(string arch)
    {
        Assert.True(packages.BuildExitCode == 0, string.Join('\n', packages.BuildOutput));
        var (code, info) = await Repo.RunAsync("dpkg-deb", ["-I", packages.Deb(arch)], Timeout);
        Assert.Equal(0, code);
        foreach (var script in new[] { "postinst", "prerm", "postrm" })
        {
            Assert.Contains(info, l => l.Contains(" * ", StringComparison.Ordinal) && l.Contains(script, StringComparison.Ordinal));
        }

        using var control = new TempDirectory();
        Assert.Equal(0, (await Repo.RunAsync("dpkg-deb", ["-e", packages.Deb(arch), control.Path], Timeout)).ExitCode);
        Assert.Equal(["/etc/edgenode/edgenode.json"], File.ReadAllLines(control.Combine("conffiles")));
        foreach (var script in new[] { "postinst", "prerm", "postrm" })
        {
            var (syntax, lines) = await Repo.RunAsync("sh", ["-n", control.Combine(script)], Timeout);
            Assert.True(syntax == 0, script + ": " + string.Join('\n', lines));
        }

        var postinst = File.ReadAllText(control.Combine("postinst"));
        Assert.Contains("adduser --system", postinst, StringComparison.Ordinal);
        Assert.Contains("enable edgenode.service", postinst, StringComparison.Ordinal);
        Assert.Contains("[ -d /run/systemd/system ]", postinst, StringComparison.Ordinal);
        var postrm = File.ReadAllText(control.Combine("postrm"));
        Assert.Contains("EDGENODE_PURGE_STATE", postrm, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InstalledAmd64_UnitsVerifyWithTheRealProgram()
    {
        Assert.True(packages.BuildExitCode == 0, string.Join('\n', packages.BuildOutput));
        using var root = new TempDirectory();
        Assert.Equal(0, (await Repo.RunAsync("dpkg", ["-x", packages.Deb("amd64"), root.Path], Timeout)).ExitCode);
        var units = Directory.GetFiles(root.Combine(SystemdRoot.UnitDirectory)).Select(Path.GetFileName).ToArray();
        SystemdRoot.AddHostUnits(root.Path);

        var (code, lines) = await SystemdRoot.VerifyAsync(root.Path, units!);

        Assert.True(code == 0, string.Join('\n', lines));
        Assert.DoesNotContain(lines, l => l.Contains("edgenode", StringComparison.Ordinal));
    }

    [Fact]
    public async Task InstalledAmd64_VersionAndDemo_RunFromTheUnpackedTree()
    {
        Assert.True(packages.BuildExitCode == 0, string.Join('\n', packages.BuildOutput));
        using var root = new TempDirectory();
        Assert.Equal(0, (await Repo.RunAsync("dpkg", ["-x", packages.Deb("amd64"), root.Path], Timeout)).ExitCode);
        var edgenode = root.Combine("usr/bin/edgenode");
        // The packaged /etc/edgenode/edgenode.json (comments, trailing commas) is read as the system configuration.
        var env = new Dictionary<string, string> { ["EDGENODE_CONFIG"] = root.Combine("etc/edgenode/edgenode.json") };

        var (versionCode, version) = await Repo.RunAsync(edgenode, ["--version"], Timeout, env);
        Assert.Equal(0, versionCode);
        Assert.StartsWith(Repo.Version, version.Single(), StringComparison.Ordinal);

        var (demoCode, demo) = await Repo.RunAsync(edgenode, ["demo"], Timeout, env);
        Assert.True(demoCode == 0, string.Join('\n', demo));
        Assert.Contains(demo, l => l.Contains("every job ended as expected", StringComparison.Ordinal));
        Assert.True(demo.Count(l => l.Contains(": SUCCEEDED", StringComparison.Ordinal)) >= 3, string.Join('\n', demo));
    }

    private async Task<string> FieldAsync(string arch, string field)
    {
        var (code, lines) = await Repo.RunAsync("dpkg-deb", ["-f", packages.Deb(arch), field], Timeout);
        Assert.Equal(0, code);
        return string.Join('\n', lines).Trim();
    }

    private static (string Path, string? LinkTarget, string Line) ParseEntry(string line)
    {
        // "-rw-r--r-- root/root      1111 2026-11-29 15:23 ./etc/edgenode/edgenode.json" or "... ./usr/bin/edgenode -> ../lib/..."
        var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
        var name = parts[5];
        var arrow = name.IndexOf(" -> ", StringComparison.Ordinal);
        return arrow < 0 ? (name.TrimEnd('/') is "." ? "./" : name, null, line) : (name[..arrow], name[(arrow + 4)..], line);
    }
}
