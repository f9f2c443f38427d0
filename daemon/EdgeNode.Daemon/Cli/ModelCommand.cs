using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Daemon.Cli;

/// <summary>
/// <c>edgenode model ...</c>: model file tools (DESIGN.md §8): <c>model synth</c>, which writes a synthesized
/// GPT-2 ONNX model (DESIGN.md §2; <c>--layout optimum|no-position-ids|merged</c>) and prints its path, size in bytes
/// and SHA-256; <c>model inspect FILE [--json]</c>, which prints the variant, signature, config, precision and the
/// execution providers the file suits (exit 1 with the problems when it is not a usable GPT-2 model).
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
        var model = new Command("model", "Synthesize and inspect GPT-2 ONNX models.");
        model.Subcommands.Add(CreateSynth());
        model.Subcommands.Add(CreateInspect());
        model.SetAction(parseResult =>
        {
            parseResult.InvocationConfiguration.Error.WriteLine("model: a subcommand is required: synth or inspect (see 'model --help').");
            return BadArguments;
        });
        return model;
    }

    private static Command CreateInspect()
    {
        var file = new Argument<string>("FILE") { Description = "The ONNX model file." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of text." };
        var inspect = new Command("inspect", "Print a GPT-2 ONNX model's variant, signature, config, precision and suitable execution providers.")
        {
            file,
            json,
        };
        inspect.SetAction(parseResult =>
        {
            TextWriter stdout = parseResult.InvocationConfiguration.Output;
            TextWriter stderr = parseResult.InvocationConfiguration.Error;
            string? path = parseResult.GetValue(file);
            if (string.IsNullOrWhiteSpace(path))
            {
                stderr.WriteLine("model inspect: FILE is required.");
                return BadArguments;
            }

            ModelInspection inspection;
            try
            {
                inspection = ModelInspection.Inspect(path);
            }
            catch (ModelLoadException e)
            {
                stderr.WriteLine($"model inspect: {e.Message}");
                return ModelInspectCommand.NotAModel;
            }

            if (parseResult.GetValue(json))
            {
                ModelInspectCommand.WriteJson(stdout, inspection);
            }
            else
            {
                ModelInspectCommand.WriteText(stdout, inspection);
            }

            return 0;
        });
        return inspect;
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
        var layout = new Option<string>("--layout")
        {
            Description = "File layout: optimum (model.onnx, default), no-position-ids, or merged (legacy decoder_model_merged.onnx with use_cache_branch).",
            HelpName = "optimum|no-position-ids|merged",
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
            layout,
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
                parseResult.GetValue(output),
                parseResult.GetValue(layout));
            if (arguments.Errors.Count > 0)
            {
                foreach (string error in arguments.Errors)
                {
                    stderr.WriteLine($"model synth: {error}");
                }

                stderr.WriteLine("usage: model synth --preset tiny|small --precision fp32|int8 [--quantize-lm-head] --seed N [--layout optimum|no-position-ids|merged] --out FILE");
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

internal static class ModelInspectCommand
{
    /// <summary>Exit code when the file is not a usable GPT-2 model.</summary>
    public const int NotAModel = 1;

    public static string VariantName(ModelVariant variant) => variant switch
    {
        ModelVariant.NoPositionIds => "no-position-ids",
        ModelVariant.MergedLegacy => "merged-legacy",
        _ => "optimum",
    };

    public static void WriteText(TextWriter w, ModelInspection inspection)
    {
        var info = inspection.Info;
        w.WriteLine($"path: {info.Path}");
        w.WriteLine($"variant: {VariantName(info.Variant)}");
        w.WriteLine($"precision: {info.Precision}{(inspection.DynamicInt8 ? " (dynamic INT8, QOperator)" : string.Empty)}");
        w.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"config: n_layer {info.NLayer}, n_head {info.NHead}, head_dim {info.HeadDim}, n_embd {info.NEmbd}, vocab {info.VocabSize}, n_positions {info.NPositions}"));
        w.WriteLine("inputs:");
        foreach (var t in inspection.Inputs)
        {
            w.WriteLine($"  {t.Name}: {t.ElementType} [{string.Join(", ", t.Dims)}]");
        }

        w.WriteLine("outputs:");
        foreach (var t in inspection.Outputs)
        {
            w.WriteLine($"  {t.Name}: {t.ElementType} [{string.Join(", ", t.Dims)}]");
        }

        w.WriteLine($"execution providers: {string.Join(", ", inspection.SuitableProviders)} ({inspection.ProviderNote})");
    }

    public static void WriteJson(TextWriter w, ModelInspection inspection)
    {
        var info = inspection.Info;
        using var buffer = new MemoryStream();
        using (var json = new System.Text.Json.Utf8JsonWriter(buffer, new System.Text.Json.JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("path", info.Path);
            json.WriteString("variant", VariantName(info.Variant));
            json.WriteString("precision", info.Precision);
            json.WriteBoolean("dynamic_int8", inspection.DynamicInt8);
            json.WriteStartObject("config");
            json.WriteNumber("n_layer", info.NLayer);
            json.WriteNumber("n_head", info.NHead);
            json.WriteNumber("head_dim", info.HeadDim);
            json.WriteNumber("n_embd", info.NEmbd);
            json.WriteNumber("vocab_size", info.VocabSize);
            json.WriteNumber("n_positions", info.NPositions);
            json.WriteEndObject();
            WriteTensors(json, "inputs", inspection.Inputs);
            WriteTensors(json, "outputs", inspection.Outputs);
            json.WriteStartArray("execution_providers");
            foreach (string provider in inspection.SuitableProviders)
            {
                json.WriteStringValue(provider);
            }

            json.WriteEndArray();
            json.WriteString("execution_provider_note", inspection.ProviderNote);
            json.WriteEndObject();
        }

        w.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    private static void WriteTensors(System.Text.Json.Utf8JsonWriter json, string name, IReadOnlyList<TensorDescription> tensors)
    {
        json.WriteStartArray(name);
        foreach (var t in tensors)
        {
            json.WriteStartObject();
            json.WriteString("name", t.Name);
            json.WriteString("type", t.ElementType);
            json.WriteStartArray("dims");
            foreach (string d in t.Dims)
            {
                json.WriteStringValue(d);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        json.WriteEndArray();
    }
}

/// <summary>Validated <c>model synth</c> arguments: the options and output path, or the list of what is wrong.</summary>
/// <param name="Options">Set when <paramref name="Errors"/> is empty.</param>
/// <param name="OutputPath">Set when <paramref name="Errors"/> is empty.</param>
/// <param name="Errors">One message per problem, each naming the option and the rule.</param>
internal sealed record SynthArguments(SynthesisOptions? Options, string? OutputPath, IReadOnlyList<string> Errors)
{
    public static SynthArguments Validate(
        IReadOnlyList<string> unmatched, string? preset, string? precision, bool quantizeLmHead, string? seed, string? output, string? layout = null)
    {
        var errors = new List<string>();
        foreach (string token in unmatched)
        {
            errors.Add($"unexpected argument '{token}'.");
        }

        ModelPreset? parsedPreset = Choice(errors, "--preset", preset, ("tiny", ModelPreset.Tiny), ("small", ModelPreset.Small));
        ModelPrecision? parsedPrecision = Choice(errors, "--precision", precision, ("fp32", ModelPrecision.Fp32), ("int8", ModelPrecision.Int8));

        ModelLayout? parsedLayout = string.IsNullOrWhiteSpace(layout)
            ? ModelLayout.Optimum
            : Choice(errors, "--layout", layout, ("optimum", ModelLayout.Optimum), ("no-position-ids", ModelLayout.NoPositionIds), ("merged", ModelLayout.Merged));

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
            : new SynthArguments(new SynthesisOptions(parsedPreset!.Value, parsedPrecision!.Value, quantizeLmHead, parsedSeed!.Value, parsedLayout!.Value), output, errors);
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
