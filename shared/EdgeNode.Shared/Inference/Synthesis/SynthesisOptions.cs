using System.Diagnostics.CodeAnalysis;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>GPT-2 architecture sizes the synthesizer can produce (DESIGN.md §2).</summary>
public enum ModelPreset
{
    /// <summary>n_embd 64, 2 layers, 2 heads (head_dim 32): the embedded default and the test model (~3.4 M parameters).</summary>
    Tiny,

    /// <summary>The GPT-2 124M shape: n_embd 768, 12 layers, 12 heads (head_dim 64), for benchmarks.</summary>
    Small,
}

/// <summary>Numeric format of the synthesized model's linear layers.</summary>
public enum ModelPrecision
{
    /// <summary>Every weight is float32.</summary>
    Fp32,

    /// <summary>
    /// Every MatMul with an initializer weight uses the onnxruntime <c>quantize_dynamic</c> QOperator pattern
    /// (DynamicQuantizeLinear → MatMulInteger → Cast → Mul), weights symmetric per-tensor int8.
    /// </summary>
    [SuppressMessage("Naming", "CA1720:Identifier contains type name", Justification = "INT8 is the precision's standard name.")]
    Int8,
}

/// <summary>
/// Which ONNX file layout (inputs/outputs) to produce. All layouts share the decoder body and the weights, so the
/// same seed gives the same logits in every layout.
/// </summary>
public enum ModelLayout
{
    /// <summary>The Hugging Face Optimum (>= 1.14) <c>model.onnx</c> signature of DESIGN.md §2.</summary>
    Optimum,

    /// <summary>
    /// Like <see cref="Optimum"/> without the <c>position_ids</c> input: the graph numbers the new tokens
    /// past_length + arange(sequence_length), as transformers' GPT2Model does when position_ids is None (so left
    /// padding is not taken into account).
    /// </summary>
    NoPositionIds,

    /// <summary>
    /// The legacy Optimum merged decoder (<c>decoder_model_merged.onnx</c>): inputs <c>input_ids</c>,
    /// <c>attention_mask</c>, <c>past_key_values.{i}.key|value</c>, <c>use_cache_branch</c> (bool [1]), no
    /// <c>position_ids</c> (positions as in <see cref="NoPositionIds"/>). An <c>If</c> node on use_cache_branch
    /// passes the past through when true and an empty past [batch, n_head, 0, head_dim] when false.
    /// </summary>
    Merged,
}

/// <summary>What to synthesize. Equal options always give byte-identical files, on any machine.</summary>
/// <param name="Preset">Architecture size.</param>
/// <param name="Precision">FP32 or dynamic INT8 (QOperator).</param>
/// <param name="QuantizeLmHead">
/// INT8 only: also quantize the LM head (a quantized copy of wte^T named <c>lm_head.weight_quantized</c>, [n_embd, vocab]);
/// by default the LM head stays FP32 and tied to <c>transformer.wte.weight</c>. Must be false for <see cref="ModelPrecision.Fp32"/>.
/// </param>
/// <param name="Seed">Seed of the weights. FP32 and INT8 models of the same seed and preset quantize the same FP32 weights.</param>
/// <param name="Layout">File layout; <see cref="ModelLayout.Optimum"/> by default.</param>
public sealed record SynthesisOptions(
    ModelPreset Preset,
    ModelPrecision Precision,
    bool QuantizeLmHead,
    ulong Seed,
    ModelLayout Layout = ModelLayout.Optimum);

/// <summary>
/// The demonstration model that the daemon and the relay synthesize when no model file is configured
/// (<c>{state}/models/</c><see cref="FileName"/>, DESIGN.md §2 preset <c>tiny</c>): the same bytes on every machine, so a
/// job gives the same text on a node and on its relay.
/// </summary>
/// <remarks>
/// INT8 with the LM head quantized too, the form recommended for <c>small</c> (docs/BENCHMARKS.md "Speed": +30-60 % decode
/// and prefill). For the tiny preset the FP32 LM head would be most of the weights: the tied <c>transformer.wte.weight</c>
/// (50,257 × 64 × 4 B = 12.3 MiB) is read by the embedding Gather, and ONNX Runtime keeps a second, pre-packed copy of its
/// transpose for the LM head MatMul; quantizing the head replaces that copy with 3.1 MiB of INT8 (idle RSS 146 instead of
/// 155 MB, docs/BENCHMARKS.md "Idle memory").
/// </remarks>
public static class DemonstrationModel
{
    /// <summary>Weight seed; fixed so every node and relay synthesizes the same bytes.</summary>
    public const ulong Seed = 42;

    /// <summary>File name under <c>{state}/models/</c>. Named after its options: a state directory holding an older
    /// demonstration model keeps it under its old name and synthesizes this one.</summary>
    public const string FileName = "tiny-int8-lmhead.onnx";

    /// <summary>Tiny preset, INT8 (QOperator) with the LM head quantized, <see cref="Seed"/>, Optimum layout.</summary>
    public static SynthesisOptions Options { get; } = new(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: true, Seed);
}
