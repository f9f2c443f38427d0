using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Cli;

/// <summary>Runs the built <c>edgenode</c> program (copied beside the tests) as a child process.</summary>
internal static class EdgeNodeProcess
{
    public static string DllPath => Path.Combine(AppContext.BaseDirectory, "edgenode.dll");

    public static ProcessRunner Start(params string[] args) => StartWithEnvironment(new Dictionary<string, string>(), args);

    /// <summary>Starts the program with extra environment variables (e.g. NOTIFY_SOCKET for the systemd tests).</summary>
    public static ProcessRunner StartWithEnvironment(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var env = new Dictionary<string, string>
        {
            // Keep a developer's /etc/edgenode/edgenode.json out of the tests.
            ["EDGENODE_CONFIG"] = "",
            ["DOTNET_NOLOGO"] = "1",
        };
        foreach (var (k, v) in environment)
        {
            env[k] = v;
        }

        return ProcessRunner.Start("dotnet", [DllPath, .. args], env);
    }
}
