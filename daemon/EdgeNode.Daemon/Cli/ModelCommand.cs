using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Daemon.Cli;

/// <summary>
/// <c>edgenode model ...</c>: model file tools (DESIGN.md §8). Today: <c>model synth</c>, which writes a synthesized
/// GPT-2 ONNX model (DESIGN.md §2) and prints its path, size in bytes and SHA-256.
/// </summary>
/// <remarks>
/// Exit codes: 0 written; 2 bad arguments (missing, unknown or invalid, each message naming the option and the
/// rule); 1 the file could not be written. The synth options are parsed leniently by System.CommandLine and
/// validated here, so that bad values get exit code 2 rather than the parser's generic 1; an error the parser
/// itself raises (an option given twice) exits with whatever the root command maps parse errors to.
/// </remarks>
internal static class ModelCommand
{
    /// <summary>Exit code for bad command-line arguments.</summary>
    public const int BadArguments = 2;

    /// <summary>Exit code when the model file cannot be written.</summary>
    public const int WriteFailed = 1;

    /// <summary>The <c>model</c> command with its <c>synth</c> subcommand.</summary>
    public static Command Create()
    {
        var model = new Command("model", "Synthesize GPT-2 ONNX models.");
        model.Subcommands.Add(CreateSynth());
        model.SetAction(parseResult =>
        {
            parseResult.InvocationConfiguration.Error.WriteLine("model: a subcommand is required: synth (see 'model --help').");
            return BadArguments;
        });
        return model;
    }

    private static Command CreateSynth()
    {
        var preset = new Option<string>("--preset")
        {
            Description = "Architecture: tiny (n_embd 64, 2 layers, 2 heads) or small (GPT-2 124M shape).",
            HelpName = "tiny|small",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var precision = new Option<string>("--precision")
        {
            Description = "fp32, or int8 (onnxruntime quantize_dynamic QOperator pattern).",
            HelpName = "fp32|int8",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var quantizeLmHead = new Option<bool>("--quantize-lm-head")
        {
            Description = "int8 only: also quantize the LM head (a quantized copy of wte^T).",
        };
        var seed = new Option<string>("--seed")
        {
            Description = "Weight seed, an unsigned 64-bit integer. Same options, same bytes.",
            HelpName = "N",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var output = new Option<string>("--out")
        {
            Description = "Output .onnx path (written atomically; the directory is created if missing).",
            HelpName = "FILE",
            Arity = ArgumentArity.ZeroOrOne,
        };

        var synth = new Command("synth", "Write a synthesized GPT-2 ONNX model (Optimum model.onnx signature) and print its path, size and SHA-256.")
        {
            preset,
            precision,
            quantizeLmHead,
            seed,
            output,
        };
        synth.TreatUnmatchedTokensAsErrors = false;
        synth.SetAction(parseResult =>
        {
            TextWriter stdout = parseResult.InvocationConfiguration.Output;
            TextWriter stderr = parseResult.InvocationConfiguration.Error;

            SynthArguments arguments = SynthArguments.Validate(
                parseResult.UnmatchedTokens,
                parseResult.GetValue(preset),
                parseResult.GetValue(precision),
                parseResult.GetValue(quantizeLmHead),
                parseResult.GetValue(seed),
                parseResult.GetValue(output));
            if (arguments.Errors.Count > 0)
            {
                foreach (string error in arguments.Errors)
                {
                    stderr.WriteLine($"model synth: {error}");
                }

                stderr.WriteLine("usage: model synth --preset tiny|small --precision fp32|int8 [--quantize-lm-head] --seed N --out FILE");
                return BadArguments;
            }

            string path = Path.GetFullPath(arguments.OutputPath!);
            try
            {
                ModelSynthesizer.WriteFile(arguments.Options!, path);
                long size = new FileInfo(path).Length;
                string sha256;
                using (FileStream stream = File.OpenRead(path))
                {
                    sha256 = Convert.ToHexStringLower(SHA256.HashData(stream));
                }

                stdout.WriteLine($"path: {path}");
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"size: {size} bytes"));
                stdout.WriteLine($"sha256: {sha256}");
                return 0;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"model synth: cannot write --out '{path}': {e.Message}");
                return WriteFailed;
            }
        });
        return synth;
    }
}

/// <summary>Validated <c>model synth</c> arguments: the options and output path, or the list of what is wrong.</summary>
/// <param name="Options">Set when <paramref name="Errors"/> is empty.</param>
/// <param name="OutputPath">Set when <paramref name="Errors"/> is empty.</param>
/// <param name="Errors">One message per problem, each naming the option and the rule.</param>
internal sealed record SynthArguments(SynthesisOptions? Options, string? OutputPath, IReadOnlyList<string> Errors)
{
    public static SynthArguments Validate(
        IReadOnlyList<string> unmatched, string? preset, string? precision, bool quantizeLmHead, string? seed, string? output)
    {
        var errors = new List<string>();
        foreach (string token in unmatched)
        {
            errors.Add($"unexpected argument '{token}'.");
        }

        ModelPreset? parsedPreset = Choice(errors, "--preset", preset, ("tiny", ModelPreset.Tiny), ("small", ModelPreset.Small));
        ModelPrecision? parsedPrecision = Choice(errors, "--precision", precision, ("fp32", ModelPrecision.Fp32), ("int8", ModelPrecision.Int8));

        ulong? parsedSeed = null;
        if (string.IsNullOrWhiteSpace(seed))
        {
            errors.Add("--seed is required (an unsigned 64-bit integer).");
        }
        else if (ulong.TryParse(seed, NumberStyles.None, CultureInfo.InvariantCulture, out ulong value))
        {
            parsedSeed = value;
        }
        else
        {
            errors.Add($"--seed must be an unsigned 64-bit integer (0 to {ulong.MaxValue}), got '{seed}'.");
        }

        if (string.IsNullOrWhiteSpace(output))
        {
            errors.Add("--out is required (a file path).");
        }
        else if (output.IndexOfAny(Path.GetInvalidPathChars()) >= 0 || Directory.Exists(output))
        {
            errors.Add($"--out must be a file path, got '{output}'.");
        }

        if (quantizeLmHead && parsedPrecision == ModelPrecision.Fp32)
        {
            errors.Add("--quantize-lm-head requires --precision int8.");
        }

        return errors.Count > 0
            ? new SynthArguments(null, null, errors)
            : new SynthArguments(new SynthesisOptions(parsedPreset!.Value, parsedPrecision!.Value, quantizeLmHead, parsedSeed!.Value), output, errors);
    }

    /// <summary>Maps <paramref name="value"/> (case-insensitive) to one of <paramref name="choices"/>, or records why not.</summary>
    private static T? Choice<T>(List<string> errors, string option, string? value, params (string Name, T Value)[] choices)
        where T : struct
    {
        string allowed = string.Join(" or ", choices.Select(c => c.Name));
        if (string.IsNullOrWhiteSpace(value))
        {
            errors.Add($"{option} is required ({allowed}).");
            return null;
        }

        foreach ((string name, T choice) in choices)
        {
            if (string.Equals(name, value.Trim(), StringComparison.OrdinalIgnoreCase))
            {
                return choice;
            }
        }

        errors.Add($"{option} must be {allowed}, got '{value}'.");
        return null;
    }
}
