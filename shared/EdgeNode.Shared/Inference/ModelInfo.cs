namespace EdgeNode.Shared.Inference;

/// <summary>
/// What <see cref="Gpt2Model.Load"/> found in a model file.
/// </summary>
/// <param name="Path">Full path of the loaded file.</param>
/// <param name="NLayer">Transformer blocks: the number of <c>past_key_values.{i}.key</c> inputs.</param>
/// <param name="NHead">Attention heads: dim 1 of the past/present tensors [batch, n_head, seq, head_dim].</param>
/// <param name="HeadDim">Per-head width: dim 3 of the past/present tensors.</param>
/// <param name="NEmbd">Hidden size: <c>n_embd</c> of the config metadata, else n_head × head_dim.</param>
/// <param name="VocabSize">Logits width: dim 2 of <c>logits</c> [batch, seq, vocab] (50257 for GPT-2).</param>
/// <param name="NPositions">Context length in tokens: <c>n_positions</c> of the config metadata, else 1024.
/// Prompt + new tokens must fit in it.</param>
/// <param name="ExecutionProvider">The ONNX Runtime execution provider the session runs on ("CPU").</param>
/// <param name="Precision">"int8" when the graph holds quantized ops (DynamicQuantizeLinear,
/// MatMulInteger, their fused or QDQ forms), else "fp32".</param>
public sealed record ModelInfo(
    string Path,
    int NLayer,
    int NHead,
    int HeadDim,
    int NEmbd,
    int VocabSize,
    int NPositions,
    string ExecutionProvider,
    string Precision);

/// <summary>Session settings for <see cref="Gpt2Model.Load"/> (configuration section <c>Inference</c>, DESIGN.md §8).</summary>
public sealed class InferenceSettings
{
    /// <summary>Threads ONNX Runtime uses inside one operator (intra-op); at least 1. Default 2.</summary>
    public int IntraOpThreads { get; init; } = 2;
}
