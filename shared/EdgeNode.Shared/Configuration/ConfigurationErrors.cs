using System.Text.RegularExpressions;

namespace EdgeNode.Shared.Configuration;

/// <summary>One-line descriptions of configuration binding errors, for the daemon's and the relay's start-up.</summary>
public static partial class ConfigurationErrors
{
    /// <summary>
    /// True for the binder's errors (a value that does not convert, or an unknown key under
    /// <c>BinderOptions.ErrorOnUnknownConfiguration</c>), which are <see cref="InvalidOperationException"/>s.
    /// </summary>
    public static bool IsBindingError(InvalidOperationException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return exception.Message.Contains("configuration", StringComparison.OrdinalIgnoreCase)
               || exception.Message.Contains("ErrorOnUnknownConfiguration", StringComparison.Ordinal);
    }

    /// <summary>
    /// Rewrites the binder's unknown-key message ("... not found on the instance of X.QueueOptions: 'MaxJob'") as
    /// "unknown key Queue:MaxJob (...)"; other messages pass unchanged.
    /// </summary>
    public static string Describe(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var match = UnknownKeys().Match(message);
        if (!match.Success)
        {
            return message;
        }

        var section = match.Groups["type"].Value;
        section = section.EndsWith("Options", StringComparison.Ordinal) ? section[..^"Options".Length] : section;
        var keys = match.Groups["keys"].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(k => section + ":" + k.Trim('\''));
        return $"unknown key {string.Join(", ", keys)} (check the spelling; the Configuration section of README.md lists the keys)";
    }

    [GeneratedRegex(@"instance of (?:[\w.+]+[.+])?(?<type>\w+): (?<keys>.+)$")]
    private static partial Regex UnknownKeys();
}
