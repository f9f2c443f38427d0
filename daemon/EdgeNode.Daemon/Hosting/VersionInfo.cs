using System.Reflection;

namespace EdgeNode.Daemon.Hosting;

/// <summary>The product version (from Directory.Build.props, without the source revision suffix).</summary>
internal static class VersionInfo
{
    public static string Version { get; } =
        (typeof(VersionInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0").Split('+')[0];
}
