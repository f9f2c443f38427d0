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
/// <param name="ExecutionProvider">The ONNX Runtime execution provider the session runs on: "TensorRT", "CUDA" or "CPU"
/// (<see cref="ExecutionProviderNames"/>), the first of the configured list that could be used.</param>
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
    string Precision)
{
    /// <summary>The file layout detected from the input names (see <see cref="ModelVariant"/>).</summary>
    public ModelVariant Variant { get; init; } = ModelVariant.Optimum;
}

/// <summary>GPT-2 ONNX file layouts <see cref="Gpt2Model.Load"/> accepts, detected from the graph's input names.</summary>
public enum ModelVariant
{
    /// <summary>Hugging Face Optimum (>= 1.14) <c>model.onnx</c>: input_ids, attention_mask, position_ids, past_key_values.* (DESIGN.md §2).</summary>
    Optimum,

    /// <summary>An export without <c>position_ids</c> (older exporters): the graph derives positions itself
    /// (transformers' GPT2Model: past_length + arange(sequence), which ignores left padding).</summary>
    NoPositionIds,

    /// <summary>Legacy Optimum merged decoder (<c>decoder_model_merged.onnx</c>): an extra bool input
    /// <c>use_cache_branch</c> [1] selecting the with-past branch of an If node, and no <c>position_ids</c>.
    /// Fed false with an empty past on the prefill, true afterwards (generation case 3).</summary>
    MergedLegacy,
}

/// <summary>Session settings for <see cref="Gpt2Model.Load"/> (configuration section <c>Inference</c>, DESIGN.md §8).</summary>
public sealed class InferenceSettings
{
    /// <summary>Threads ONNX Runtime uses inside one operator (intra-op); at least 1. Default 2.</summary>
    public int IntraOpThreads { get; init; } = 2;

    /// <summary>
    /// Execution providers to try, in order (names of <see cref="ExecutionProviderNames"/>); the first that can
    /// be used runs the session and each one that cannot is logged as one warning naming it and the reason.
    /// Default ["CPU"] (the daemon's <c>Inference:ExecutionProviders</c> default is ["TensorRT","CUDA","CPU"]).
    /// </summary>
    public IReadOnlyList<string> ExecutionProviders { get; init; } = [ExecutionProviderNames.Cpu];

    /// <summary>
    /// A model file per provider name (e.g. an FP16 or QDQ file for "TensorRT"); a provider without an entry
    /// uses the path given to <see cref="Gpt2Model.Load"/>. Dynamic INT8 (QOperator) files are CPU-only: a GPU
    /// provider without its own entry is skipped (with a warning) when the default file is dynamic INT8.
    /// </summary>
    public IReadOnlyDictionary<string, string> ModelPaths { get; init; } = new Dictionary<string, string>();

    /// <summary>CUDA/TensorRT device ordinal. Default 0.</summary>
    public int DeviceId { get; init; }

    /// <summary>Directory for TensorRT engine and timing caches (the daemon uses <c>{state}/trt-cache</c>);
    /// null disables the caches. Delete it when the model, ONNX Runtime, TensorRT or the GPU change.</summary>
    public string? TensorRtCacheDirectory { get; init; }

    /// <summary>TensorRT <c>trt_fp16_enable</c>. Default true.</summary>
    public bool TensorRtFp16 { get; init; } = true;

    /// <summary>TensorRT <c>trt_int8_enable</c> (needs a QDQ model or a calibration table). Default false.</summary>
    public bool TensorRtInt8 { get; init; }

    /// <summary>Largest batch in the TensorRT shape profiles (rows of <see cref="Gpt2Generator.GenerateBatch"/>). Default 4.</summary>
    public int MaxBatch { get; init; } = 4;

    /// <summary>Called with a start-up stage before slow steps (e.g. "building TensorRT engine"); null for none.</summary>
    public Action<string>? OnStage { get; init; }

    /// <summary>ONNX Runtime graph optimization level. Default ORT_ENABLE_ALL.</summary>
    public Microsoft.ML.OnnxRuntime.GraphOptimizationLevel GraphOptimizationLevel { get; init; } =
        Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>When set, ONNX Runtime writes the optimized graph there (SessionOptions.OptimizedModelFilePath);
    /// loading that file later skips the optimization passes. Null: not written.</summary>
    public string? OptimizedModelPath { get; init; }
}
