using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Cli;

/// <summary>Runs the built <c>edgenode</c> program (copied beside the tests) as a child process.</summary>
internal static class EdgeNodeProcess
{
    public static string DllPath => Path.Combine(AppContext.BaseDirectory, "edgenode.dll");

    public static ProcessRunner Start(params string[] args) =>
        ProcessRunner.Start("dotnet", [DllPath, .. args], new Dictionary<string, string>
        {
            // Keep a developer's /etc/edgenode/edgenode.json out of the tests.
            ["EDGENODE_CONFIG"] = "/nonexistent/edgenode.json",
            ["DOTNET_NOLOGO"] = "1",
        });
}
