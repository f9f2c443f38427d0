using System.Runtime.InteropServices;
using Onnx;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// Spreads (standard deviations) of the synthesized weights. Linear weights follow fan-in scaling
/// (std = gain / sqrt(fan_in), fan_in = the Conv1D "in" dim), so activations keep their scale through each layer;
/// LayerNorm weights are 1 and biases 0. The embedding spreads are tuned, not derived: position embeddings wider
/// than token embeddings keep the tied LM head from predicting the input token again forever (greedy decoding of
/// a random model otherwise collapses into one repeated token); see ModelSynthesizerTests for the check.
/// </summary>
/// <param name="TokenEmbeddingStd">std of <c>transformer.wte.weight</c>.</param>
/// <param name="PositionEmbeddingStd">std of <c>transformer.wpe.weight</c>.</param>
/// <param name="LinearGain">gain of every c_attn / c_proj / c_fc weight: std = gain / sqrt(fan_in).</param>
/// <param name="BiasStd">std of every linear bias (small, so that bias handling is exercised).</param>
internal sealed record WeightSpreads(double TokenEmbeddingStd, double PositionEmbeddingStd, double LinearGain, double BiasStd)
{
    /// <summary>The spreads used by every preset.</summary>
    public static WeightSpreads Default { get; } = new(0.02, 0.1, 1.0, 0.02);
}

/// <summary>
/// Produces the FP32 weights of a GPT-2 model under Hugging Face names. Each tensor's values depend only on
/// (seed, name, spread), so FP32 and INT8 files of one seed are made from the same numbers.
/// </summary>
internal sealed class Gpt2WeightSource
{
    private readonly ulong _seed;
    private readonly WeightSpreads _spreads;

    public Gpt2WeightSource(Gpt2Hyperparameters hyperparameters, ulong seed, WeightSpreads spreads)
    {
        Hyperparameters = hyperparameters;
        _seed = seed;
        _spreads = spreads;
    }

    public Gpt2Hyperparameters Hyperparameters { get; }

    /// <summary><c>transformer.wte.weight</c> [vocab, n_embd].</summary>
    public WeightTensor TokenEmbedding() =>
        Bell("transformer.wte.weight", [Hyperparameters.VocabSize, Hyperparameters.Embedding], _spreads.TokenEmbeddingStd);

    /// <summary><c>transformer.wpe.weight</c> [n_positions, n_embd].</summary>
    public WeightTensor PositionEmbedding() =>
        Bell("transformer.wpe.weight", [Hyperparameters.Positions, Hyperparameters.Embedding], _spreads.PositionEmbeddingStd);

    /// <summary>A LayerNorm scale (<c>*.weight</c>) of ones, [n_embd].</summary>
    public WeightTensor LayerNormWeight(string name) => Constant(name, Hyperparameters.Embedding, 1f);

    /// <summary>A LayerNorm shift (<c>*.bias</c>) of zeros, [n_embd].</summary>
    public WeightTensor LayerNormBias(string name) => Constant(name, Hyperparameters.Embedding, 0f);

    /// <summary>A Conv1D weight in Hugging Face [in, out] layout (used as MatMul(x, W)).</summary>
    public WeightTensor LinearWeight(string name, int fanIn, int fanOut) =>
        Bell(name, [fanIn, fanOut], _spreads.LinearGain / Math.Sqrt(fanIn));

    /// <summary>A Conv1D bias, [out].</summary>
    public WeightTensor LinearBias(string name, int fanOut) => Bell(name, [fanOut], _spreads.BiasStd);

    private WeightTensor Bell(string name, long[] dims, double std)
    {
        byte[] data = new byte[checked((int)WeightTensor.ElementCount(dims) * sizeof(float))];
        DeterministicRandom.FillBell(data, DeterministicRandom.StreamSeed(_seed, name), std);
        return new WeightTensor(name, dims, TensorProto.Types.DataType.Float, data);
    }

    private static WeightTensor Constant(string name, int length, float value)
    {
        byte[] data = new byte[length * sizeof(float)];
        MemoryMarshal.Cast<byte, float>(data.AsSpan()).Fill(value);
        return new WeightTensor(name, [length], TensorProto.Types.DataType.Float, data);
    }
}
