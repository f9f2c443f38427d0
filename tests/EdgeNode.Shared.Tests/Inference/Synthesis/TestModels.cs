using System.Collections.Concurrent;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Shared.Tests.Inference.Synthesis;

/// <summary>Synthesized model bytes, built once per option set for the whole test run.</summary>
internal static class TestModels
{
    public const ulong Seed = 42;

    /// <summary>"Hello, my name is" in GPT-2 BPE (see notes/onnxruntime.md).</summary>
    public static readonly long[] HelloMyNameIs = [15496, 11, 616, 1438, 318];

    private static readonly ConcurrentDictionary<SynthesisOptions, Lazy<byte[]>> Cache = new();

    public static SynthesisOptions TinyFp32 { get; } = new(ModelPreset.Tiny, ModelPrecision.Fp32, QuantizeLmHead: false, Seed);

    public static SynthesisOptions TinyInt8 { get; } = new(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: false, Seed);

    public static SynthesisOptions TinyInt8LmHead { get; } = new(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: true, Seed);

    public static byte[] Get(SynthesisOptions options) =>
        Cache.GetOrAdd(options, o => new Lazy<byte[]>(() => ModelSynthesizer.Synthesize(o))).Value;

    /// <summary>Maps a theory's "fp32" / "int8" / "int8-lm-head" to tiny options.</summary>
    public static SynthesisOptions Tiny(string variant) => variant switch
    {
        "fp32" => TinyFp32,
        "int8" => TinyInt8,
        "int8-lm-head" => TinyInt8LmHead,
        _ => throw new ArgumentOutOfRangeException(nameof(variant), variant, "fp32, int8 or int8-lm-head"),
    };
}
