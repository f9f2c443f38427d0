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
    /// Rewrites the binder's messages in the configuration's own terms: an unknown key ("... not found on the instance
    /// of X.QueueOptions: 'MaxJob'") as "unknown key Queue:MaxJob (...)", a value that does not convert ("Failed to
    /// convert configuration value 'abc' at 'Queue:MaxJobs' to type 'System.Int32'.") as "Queue:MaxJobs: 'abc' is not
    /// an integer"; other messages pass unchanged.
    /// </summary>
    public static string Describe(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (Unconvertible().Match(message) is { Success: true } value)
        {
            return $"{value.Groups["key"].Value}: '{value.Groups["value"].Value}' is not {Kind(value.Groups["type"].Value)}";
        }

        var match = UnknownKeys().Match(message);
        if (!match.Success)
        {
            return message;
        }

        var section = Section(match.Groups["type"].Value);
        var keys = match.Groups["keys"].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(k => section + ":" + k.Trim('\''));
        return $"unknown key {string.Join(", ", keys)} (check the spelling; the Configuration section of README.md lists the keys)";
    }

    /// <summary>
    /// Rewrites one failure of an <c>OptionsValidationException</c> from DataAnnotations ("DataAnnotation validation
    /// failed for 'QueueOptions' members: 'MaxJobs' with the error: 'The field MaxJobs must be between 1 and 10.'.") as
    /// "Queue:MaxJobs must be between 1 and 10"; other failures (already written in configuration terms) pass unchanged.
    /// </summary>
    public static string DescribeValidationFailure(string failure)
    {
        ArgumentNullException.ThrowIfNull(failure);
        var match = DataAnnotationFailure().Match(failure);
        if (!match.Success)
        {
            return failure;
        }

        var key = Section(match.Groups["type"].Value) + ":" + match.Groups["member"].Value;
        var error = match.Groups["error"].Value.TrimEnd('.');
        var member = match.Groups["member"].Value;
        if (error.Contains(key, StringComparison.Ordinal))
        {
            return error; // the attribute's own message already names the key
        }

        foreach (var subject in (string[])[$"The field {member}", $"The {member} field"])
        {
            if (error.StartsWith(subject, StringComparison.Ordinal))
            {
                return key + error[subject.Length..];
            }
        }

        return key + ": " + error;
    }

    /// <summary>"QueueOptions" -> "Queue": the options classes are named after their configuration section.</summary>
    private static string Section(string type) =>
        type.EndsWith("Options", StringComparison.Ordinal) ? type[..^"Options".Length] : type;

    private static string Kind(string type) => type switch
    {
        "System.Int16" or "System.Int32" or "System.Int64" or "System.UInt16" or "System.UInt32" or "System.UInt64" or "System.Byte" => "an integer",
        "System.Double" or "System.Single" or "System.Decimal" => "a number",
        "System.Boolean" => "true or false",
        "System.TimeSpan" => "a duration such as 00:00:30 (hh:mm:ss)",
        "System.Uri" => "a URL",
        _ => "a valid " + type[(type.LastIndexOfAny(['.', '+']) + 1)..] + " value",
    };

    [GeneratedRegex(@"instance of (?:[\w.+]+[.+])?(?<type>\w+): (?<keys>.+)$")]
    private static partial Regex UnknownKeys();

    [GeneratedRegex(@"^Failed to convert configuration value '(?<value>.*)' at '(?<key>[^']+)' to type '(?<type>[^']+)'")]
    private static partial Regex Unconvertible();

    [GeneratedRegex(@"^DataAnnotation validation failed for '(?<type>\w+)' members: '(?<member>[\w.]+)' with the error: '(?<error>.*)'\.?$", RegexOptions.Singleline)]
    private static partial Regex DataAnnotationFailure();
}
