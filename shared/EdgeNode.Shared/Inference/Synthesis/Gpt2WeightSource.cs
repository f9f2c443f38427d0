using System.Runtime.InteropServices;
using Onnx;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// Spreads (standard deviations) of the synthesized weights. Linear weights follow fan-in scaling
/// (std = gain / sqrt(fan_in), fan_in = the Conv1D "in" dim), so activations keep their scale through each layer;
/// LayerNorm weights are 1 and biases 0.
/// </summary>
/// <remarks>
/// The embedding spreads are tuned per preset, by measurement (greedy decoding, 32 tokens, several seeds and
/// prompts). With the tied LM head, logit_j = ln_f(h) · wte_j, and h contains wte[t] of the input token t: the
/// input token's own logit is about E · std(wte)² / std(h) (E = n_embd), the best of 50257 unrelated rows about
/// 4 · sqrt(E) · std(wte), a ratio of sqrt(E) · std(wte) / (4 · std(h)). Too wide a wte makes a random model
/// repeat its input token forever, and the allowed width shrinks like 1 / sqrt(E). Position embeddings wider than
/// token embeddings make the prediction move on with the position. Measured on seeds 0–5 with two prompts: tiny (wte 0.1, wpe 0.3) gives
/// 21–27 distinct tokens out of 32 and still depends on the prompt (only 5–12 of 32 greedy tokens coincide between
/// two prompts); small (wte 0.029, wpe 0.5) gives ~30 of 32 distinct but is mostly driven by position, which is fine
/// for benchmarks. See ModelNumericsTests for the asserted check.
/// </remarks>
/// <param name="TokenEmbeddingStd">std of <c>transformer.wte.weight</c>.</param>
/// <param name="PositionEmbeddingStd">std of <c>transformer.wpe.weight</c>.</param>
/// <param name="LinearGain">gain of the c_attn and c_fc weights: std = gain / sqrt(fan_in).</param>
/// <param name="ResidualGain">
/// gain of the projections that write into the residual stream (attn.c_proj, mlp.c_proj):
/// std = gain / sqrt(fan_in) / sqrt(2 · n_layer), GPT-2's residual scaling, so the sum of the 2 · n_layer
/// sublayer outputs keeps the same size at every depth.
/// </param>
/// <param name="BiasStd">std of every linear bias (small, so that bias handling is exercised).</param>
internal sealed record WeightSpreads(double TokenEmbeddingStd, double PositionEmbeddingStd, double LinearGain, double ResidualGain, double BiasStd)
{
    /// <summary>The spreads of <paramref name="preset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An undefined preset.</exception>
    public static WeightSpreads For(ModelPreset preset) => preset switch
    {
        ModelPreset.Tiny => new WeightSpreads(0.1, 0.3, 1.0, 1.0, 0.02),
        ModelPreset.Small => new WeightSpreads(0.029, 0.5, 1.0, 1.0, 0.02),
        _ => throw new ArgumentOutOfRangeException(nameof(preset), preset, "Preset must be Tiny or Small."),
    };
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

    /// <summary>A Conv1D weight [in, out] that writes into the residual stream (attn.c_proj, mlp.c_proj).</summary>
    public WeightTensor ResidualProjectionWeight(string name, int fanIn, int fanOut) =>
        Bell(name, [fanIn, fanOut], _spreads.ResidualGain / Math.Sqrt(fanIn) / Math.Sqrt(2.0 * Hyperparameters.Layers));

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
