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
    /// The one-line description of a configuration error met while building or validating a host, or null when
    /// <paramref name="exception"/> is not one: a binder error (<see cref="IsBindingError"/>, described by
    /// <see cref="Describe"/>) or a JSON syntax error in a configuration file (the file, then the line and byte of
    /// the <see cref="System.Text.Json.JsonException"/>). Options validation failures are not covered: their
    /// <c>OptionsValidationException</c> lists its failures itself.
    /// </summary>
    public static string? DescribeStartupError(Exception exception) => exception switch
    {
        InvalidOperationException binding when IsBindingError(binding) => Describe(binding.Message),
        InvalidDataException file when file.GetBaseException() is System.Text.Json.JsonException json => $"{file.Message} {json.Message}",
        _ => null,
    };

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
