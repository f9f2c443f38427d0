using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.TestSupport;

/// <summary>Synthesized models shared by the tests of one process (written once into a temp directory).</summary>
public static class Models
{
    private static readonly Lazy<string> TinyInt8Path = new(() => Write(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: false, Seed: 42)));
    private static readonly Lazy<string> DemonstrationPath = new(() => Write(DemonstrationModel.Options));
    private static readonly Lazy<string> TinyFp32Path = new(() => Write(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Fp32, QuantizeLmHead: false, Seed: 42)));

    /// <summary>The tiny INT8 model with its LM head in FP32 (tied to <c>transformer.wte.weight</c>), seed 42.</summary>
    public static string TinyInt8 => TinyInt8Path.Value;

    /// <summary>The daemon's and the relay's default when no model is configured (<see cref="DemonstrationModel"/>: tiny,
    /// INT8 with the LM head quantized, seed 42).</summary>
    public static string Demonstration => DemonstrationPath.Value;

    /// <summary>The tiny FP32 model, seed 42 (same weights as <see cref="TinyInt8"/> before quantization).</summary>
    public static string TinyFp32 => TinyFp32Path.Value;

    private static string Write(SynthesisOptions options)
    {
        var dir = Path.Combine(Path.GetTempPath(), "edgenode-test-models", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, $"{options.Preset}-{options.Precision}{(options.QuantizeLmHead ? "-lmhead" : "")}-{options.Seed}.onnx".ToLowerInvariant());
        ModelSynthesizer.WriteFile(options, path);
        return path;
    }
}
