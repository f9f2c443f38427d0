using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.TestSupport;

/// <summary>Synthesized models shared by the tests of one process (written once into a temp directory).</summary>
public static class Models
{
    private static readonly Lazy<string> TinyInt8Path = new(() => Write(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: false, Seed: 42)));
    private static readonly Lazy<string> TinyFp32Path = new(() => Write(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Fp32, QuantizeLmHead: false, Seed: 42)));

    /// <summary>The tiny INT8 model (the daemon's demonstration default), seed 42.</summary>
    public static string TinyInt8 => TinyInt8Path.Value;

    /// <summary>The tiny FP32 model, seed 42 (same weights as <see cref="TinyInt8"/> before quantization).</summary>
    public static string TinyFp32 => TinyFp32Path.Value;

    private static string Write(SynthesisOptions options)
    {
        var dir = Path.Combine(Path.GetTempPath(), "edgenode-test-models", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, $"{options.Preset}-{options.Precision}-{options.Seed}.onnx".ToLowerInvariant());
        ModelSynthesizer.WriteFile(options, path);
        return path;
    }
}
