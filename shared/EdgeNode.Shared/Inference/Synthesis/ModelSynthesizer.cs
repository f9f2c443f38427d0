using System.Globalization;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Onnx;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// Synthesizes GPT-2-architecture ONNX models with the Hugging Face Optimum (>= 1.14) <c>model.onnx</c> signature
/// (DESIGN.md §2), deterministic weights and Hugging Face initializer names: the product's stand-in for real GPT-2
/// weights, which cannot be downloaded on the build machines.
/// </summary>
/// <remarks>
/// The file: ONNX IR version 8, default-domain opset 17, producer <c>edgenode-synth</c>; inputs <c>input_ids</c> int64
/// [batch_size, sequence_length], <c>attention_mask</c> int64 [batch_size, past_sequence_length + sequence_length],
/// <c>position_ids</c> int64 [batch_size, sequence_length], <c>past_key_values.{i}.key|value</c> float
/// [batch_size, n_head, past_sequence_length, head_dim]; outputs <c>logits</c> float
/// [batch_size, sequence_length, 50257] and <c>present.{i}.key|value</c> float
/// [batch_size, n_head, past_sequence_length + sequence_length, head_dim]. metadata_props: <c>config</c> (the
/// GPT2Config JSON) and <c>edgenode.synthesis</c> (JSON: generator, generator_version, synthesized: true, preset,
/// precision, quantize_lm_head, layout, seed as a decimal string). Sizes: tiny ≈ 13.5 MB (FP32 and INT8 alike:
/// the FP32 wte dominates); small FP32 ≈ 498 MB, small INT8 ≈ 243 MB (≈ 282 MB with a quantized LM head).
/// Small takes a few seconds to build on 2 cores.
/// </remarks>
public static class ModelSynthesizer
{
    /// <summary>ModelProto.producer_name of synthesized files.</summary>
    public const string ProducerName = "edgenode-synth";

    /// <summary>
    /// Version of the synthesis recipe (ModelProto.producer_version). Bump it whenever the bytes for given options
    /// change, so that a file's origin stays traceable.
    /// </summary>
    public const string GeneratorVersion = "1";

    /// <summary>metadata_props key of the synthesis record.</summary>
    public const string SynthesisMetadataKey = "edgenode.synthesis";

    /// <summary>ONNX IR version written (IR 8 = ONNX 1.12, the newest the python onnx checker on our machines accepts; ORT 1.31 reads up to IR 11).</summary>
    internal const long IrVersion = 8;

    /// <summary>Default-domain opset written (17: the first with LayerNormalization).</summary>
    internal const long OpsetVersion = 17;

    /// <summary>Builds the model and returns the serialized ModelProto.</summary>
    /// <param name="options">What to build; equal options give byte-identical results on any machine.</param>
    /// <returns>The .onnx file bytes.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">An undefined enum value, or QuantizeLmHead with FP32 precision.</exception>
    /// <exception cref="PlatformNotSupportedException">A big-endian machine (the weight bytes are written in host order).</exception>
    public static byte[] Synthesize(SynthesisOptions options) => Build(options).ToByteArray();

    /// <summary>
    /// Builds the model and writes it to <paramref name="path"/> atomically: into a temporary file in the same
    /// directory, flushed to disk, then renamed over <paramref name="path"/>. Readers see the old file or the whole
    /// new one, never a partial file. The parent directory is created when missing.
    /// </summary>
    /// <param name="options">What to build.</param>
    /// <param name="path">Destination file path.</param>
    /// <exception cref="ArgumentException">Bad options (see <see cref="Synthesize"/>) or an empty path.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    /// <exception cref="UnauthorizedAccessException">No permission to write the directory.</exception>
    public static void WriteFile(SynthesisOptions options, string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ModelProto model = Build(options);

        string fullPath = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(fullPath) ?? throw new ArgumentException($"Path '{path}' has no directory.", nameof(path));
        Directory.CreateDirectory(directory);
        string temporary = Path.Combine(directory, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                model.WriteTo(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Builds the ModelProto for <paramref name="options"/> (weights wrapped, not copied).</summary>
    internal static ModelProto Build(SynthesisOptions options)
    {
        Validate(options);
        return Build(options, WeightSpreads.For(options.Preset));
    }

    /// <summary>Builds with explicit spreads (for tuning experiments); <paramref name="options"/> must be valid.</summary>
    internal static ModelProto Build(SynthesisOptions options, WeightSpreads spreads)
    {
        Gpt2Hyperparameters hp = Gpt2Hyperparameters.For(options.Preset);
        var weights = new Gpt2WeightSource(hp, options.Seed, spreads);
        ILinearEmitter linear = options.Precision == ModelPrecision.Int8 ? DynamicInt8LinearEmitter.Instance : Fp32LinearEmitter.Instance;

        var graph = new OnnxGraphBuilder($"edgenode_gpt2_{Name(options.Preset)}_{Name(options.Precision)}");
        switch (options.Layout)
        {
            case ModelLayout.Optimum:
                Gpt2DecoderGraph.EmitOptimum(graph, weights, linear, options.QuantizeLmHead);
                break;
            case ModelLayout.NoPositionIds:
                Gpt2DecoderGraph.EmitNoPositionIds(graph, weights, linear, options.QuantizeLmHead);
                break;
            case ModelLayout.Merged:
                Gpt2DecoderGraph.EmitMerged(graph, weights, linear, options.QuantizeLmHead);
                break;
            default:
                throw new ArgumentException($"Layout {options.Layout} is not supported.", nameof(options));
        }

        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = ProducerName,
            ProducerVersion = GeneratorVersion,
            DocString = "GPT-2 architecture with synthesized (random, deterministic) weights; not a trained model.",
            Graph = graph.Graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = string.Empty, Version = OpsetVersion });
        model.MetadataProps.Add(new StringStringEntryProto { Key = "config", Value = hp.ToConfigJson() });
        model.MetadataProps.Add(new StringStringEntryProto { Key = SynthesisMetadataKey, Value = SynthesisJson(options) });
        return model;
    }

    private static void Validate(SynthesisOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Model synthesis writes raw tensor bytes in host order and needs a little-endian machine.");
        }

        if (!Enum.IsDefined(options.Preset))
        {
            throw new ArgumentException($"Preset {options.Preset} is not defined (Tiny or Small).", nameof(options));
        }

        if (!Enum.IsDefined(options.Precision))
        {
            throw new ArgumentException($"Precision {options.Precision} is not defined (Fp32 or Int8).", nameof(options));
        }

        if (!Enum.IsDefined(options.Layout))
        {
            throw new ArgumentException($"Layout {options.Layout} is not defined.", nameof(options));
        }

        if (options.QuantizeLmHead && options.Precision != ModelPrecision.Int8)
        {
            throw new ArgumentException("QuantizeLmHead requires Precision Int8.", nameof(options));
        }
    }

    private static string SynthesisJson(SynthesisOptions options)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("generator", ProducerName);
            w.WriteString("generator_version", GeneratorVersion);
            w.WriteBoolean("synthesized", true);
            w.WriteString("preset", Name(options.Preset));
            w.WriteString("precision", Name(options.Precision));
            w.WriteBoolean("quantize_lm_head", options.QuantizeLmHead);
            w.WriteString("layout", Name(options.Layout));
            // A decimal string: a ulong does not fit a JSON number that every reader keeps exactly.
            w.WriteString("seed", options.Seed.ToString(CultureInfo.InvariantCulture));
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static string Name(ModelPreset preset) => preset == ModelPreset.Small ? "small" : "tiny";

    private static string Name(ModelPrecision precision) => precision == ModelPrecision.Int8 ? "int8" : "fp32";

    private static string Name(ModelLayout layout) => layout switch
    {
        ModelLayout.Optimum => "optimum",
        ModelLayout.NoPositionIds => "no-position-ids",
        ModelLayout.Merged => "merged",
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "Unknown layout."),
    };
}
