using EdgeNode.TestSupport;

namespace EdgeNode.Packaging.Tests;

/// <summary>The unit files in packaging/systemd as systemd reads them (systemd-analyze from Debian's systemd package).</summary>
[Collection("Packaging")]
public sealed class SystemdUnitTests
{
    private static readonly string[] Units = ["edgenode.service", "edgenode-relay.service"];

    [Fact]
    public async Task Verify_BothUnitsWithTheGpuDropIn_PassWithoutWarnings()
    {
        using var root = new TempDirectory();
        CopyUnitsWithStubPrograms(root.Path);
        var dropIns = Directory.CreateDirectory(root.Combine("etc/systemd/system/edgenode.service.d"));
        File.Copy(Repo.Path("packaging/systemd/edgenode.service.d/gpu.conf.example"), Path.Combine(dropIns.FullName, "gpu.conf"));

        var (code, lines) = await SystemdRoot.VerifyAsync(root.Path, Units);

        Assert.True(code == 0, string.Join('\n', lines));
        // verify reports unknown keys, bad values and missing programs as messages without failing: none allowed.
        Assert.DoesNotContain(lines, l => l.Contains("edgenode", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Verify_UnitWithATypo_IsReported()
    {
        // The check above can fail: a misspelt key in the unit is named by verify.
        using var root = new TempDirectory();
        CopyUnitsWithStubPrograms(root.Path);
        var unit = root.Combine(SystemdRoot.UnitDirectory + "/edgenode.service");
        File.WriteAllText(unit, File.ReadAllText(unit).Replace("ProtectHome=yes", "ProtectHom=yes", StringComparison.Ordinal));

        var (_, lines) = await SystemdRoot.VerifyAsync(root.Path, "edgenode.service");

        Assert.Contains(lines, l => l.Contains("ProtectHom", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("edgenode.service")]
    [InlineData("edgenode-relay.service")]
    public async Task Security_Offline_ExposureAtMost2Point5(string unit)
    {
        var (exposure, lines) = await SystemdRoot.ExposureAsync([Repo.Path("packaging/systemd/" + unit)]);
        Assert.True(exposure <= 2.5, $"exposure {exposure}:\n{string.Join('\n', lines)}");
    }

    [Fact]
    public async Task Security_Offline_WithGpuDropIn_ExposureAtMost2Point5()
    {
        using var root = new TempDirectory();
        CopyUnitsWithStubPrograms(root.Path);
        var dropIns = Directory.CreateDirectory(root.Combine("etc/systemd/system/edgenode.service.d"));
        File.Copy(Repo.Path("packaging/systemd/edgenode.service.d/gpu.conf.example"), Path.Combine(dropIns.FullName, "gpu.conf"));

        var (exposure, lines) = await SystemdRoot.ExposureAsync(["--root=" + root.Path, "edgenode.service"]);

        Assert.True(exposure <= 2.5, $"exposure {exposure}:\n{string.Join('\n', lines)}");
        Assert.Contains(lines, l => l.StartsWith("✗ PrivateDevices=", StringComparison.Ordinal));
    }

    [Fact]
    public void DaemonUnit_HasTheNotifyWatchdogAndHardeningSettings()
    {
        var unit = File.ReadAllLines(Repo.Path("packaging/systemd/edgenode.service"));
        foreach (var expected in new[]
        {
            "Type=notify", "NotifyAccess=main", "ExecStart=/usr/lib/edgenode/edgenode run", "User=edgenode",
            "StateDirectory=edgenode", "ConfigurationDirectory=edgenode", "Restart=on-failure", "WatchdogSec=60s",
            "TimeoutStopSec=60s", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
            "NoNewPrivileges=yes", "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "SystemCallFilter=@system-service",
        })
        {
            Assert.Contains(expected, unit);
        }

        // The .NET JIT needs W+X memory transitions: MemoryDenyWriteExecute=yes would kill the daemon at start.
        Assert.DoesNotContain(unit, l => l.StartsWith("MemoryDenyWriteExecute=", StringComparison.Ordinal));
    }

    [Fact]
    public void DaemonUnit_GivesTheRuntimeAGen0BudgetOfAFewMiB()
    {
        // Without it, a machine that reports no cache size (this one, many boards) collects gen0 ~85 times a second at
        // 5,000 jobs/s (docs/BENCHMARKS.md "Ingest", session 5). The runtime reads the value as hexadecimal bytes.
        var line = Assert.Single(File.ReadAllLines(Repo.Path("packaging/systemd/edgenode.service")),
            l => l.StartsWith("Environment=DOTNET_GCgen0size=", StringComparison.Ordinal));
        var value = line["Environment=DOTNET_GCgen0size=".Length..];

        Assert.StartsWith("0x", value, StringComparison.Ordinal);
        var bytes = long.Parse(value[2..], System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(bytes, 1L << 20, 64L << 20);
    }

    private static void CopyUnitsWithStubPrograms(string root)
    {
        SystemdRoot.AddHostUnits(root);
        foreach (var unit in Units)
        {
            File.Copy(Repo.Path("packaging/systemd/" + unit), Path.Combine(root, SystemdRoot.UnitDirectory, unit), overwrite: true);
        }

        var lib = Directory.CreateDirectory(Path.Combine(root, "usr/lib/edgenode"));
        foreach (var program in new[] { "edgenode", "edgenode-relay" })
        {
            var path = Path.Combine(lib.FullName, program);
            File.WriteAllText(path, "#!/bin/sh\n");
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
    }
}
