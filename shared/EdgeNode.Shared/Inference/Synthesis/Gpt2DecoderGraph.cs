using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Onnx;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// Tensor names at the boundary of the decoder body. A layout declares its graph inputs, picks these names, emits
/// the body and declares its outputs. The Optimum layout maps them 1:1 onto graph inputs and outputs; a layout
/// without <c>position_ids</c> would compute <see cref="PositionIds"/> from the attention mask before the body, and
/// the merged layout would emit the body inside the branches of an <c>If</c> on <c>use_cache_branch</c>
/// (an <see cref="OnnxGraphBuilder"/> with an outer scope).
/// </summary>
/// <param name="InputIds">int64 [batch_size, sequence_length].</param>
/// <param name="AttentionMask">int64 [batch_size, past_sequence_length + sequence_length], 1 = attend, 0 = padding.</param>
/// <param name="PositionIds">int64 [batch_size, sequence_length], absolute positions (0 … n_positions − 1).</param>
/// <param name="PastKey">float [batch_size, n_head, past_sequence_length, head_dim] of layer i.</param>
/// <param name="PastValue">Same shape as <paramref name="PastKey"/>.</param>
/// <param name="PresentKey">Name to give layer i's concatenated keys, [batch_size, n_head, past + sequence, head_dim].</param>
/// <param name="PresentValue">Same for values.</param>
/// <param name="Logits">Name to give the logits, float [batch_size, sequence_length, vocab].</param>
internal sealed record DecoderTensorNames(
    string InputIds,
    string AttentionMask,
    string PositionIds,
    Func<int, string> PastKey,
    Func<int, string> PastValue,
    Func<int, string> PresentKey,
    Func<int, string> PresentValue,
    string Logits)
{
    /// <summary>The Optimum (>= 1.14) names of DESIGN.md §2.</summary>
    public static DecoderTensorNames Optimum { get; } = new(
        "input_ids",
        "attention_mask",
        "position_ids",
        i => $"past_key_values.{i}.key",
        i => $"past_key_values.{i}.value",
        i => $"present.{i}.key",
        i => $"present.{i}.value",
        "logits");
}

/// <summary>
/// Emits the GPT-2 decoder (Radford et al. 2019; Hugging Face <c>modeling_gpt2.py</c>, eager attention) with a
/// KV cache: token + position embeddings (Gather), per layer pre-LayerNorm attention (fused c_attn split into q, k, v;
/// heads; past K/V concatenated with the new K/V on the sequence axis, giving the <c>present.*</c> tensors;
/// scores / sqrt(head_dim); causal and padding mask; softmax; c_proj; residual) and pre-LayerNorm MLP (c_fc,
/// gelu_new, c_proj, residual), final LayerNorm ln_f and an LM head tied to wte (logits = h · wteᵀ).
/// Works for any batch size, for an empty past ([B, H, 0, D]) and for prefill (S > 1) and decode (S = 1).
/// </summary>
internal static class Gpt2DecoderGraph
{
    /// <summary>
    /// Emits a whole Optimum-layout model.onnx graph: inputs <c>input_ids</c>, <c>attention_mask</c>,
    /// <c>position_ids</c>, <c>past_key_values.{i}.key|value</c> (in that order), outputs <c>logits</c>,
    /// <c>present.{i}.key|value</c>, with the symbolic dim names of DESIGN.md §2.
    /// </summary>
    public static void EmitOptimum(OnnxGraphBuilder graph, Gpt2WeightSource weights, ILinearEmitter linear, bool quantizeLmHead)
    {
        Gpt2Hyperparameters hp = weights.Hyperparameters;
        DecoderTensorNames names = DecoderTensorNames.Optimum;
        const string Batch = "batch_size";
        const string Sequence = "sequence_length";
        const string Past = "past_sequence_length";
        const string Total = "past_sequence_length + sequence_length";

        graph.Input(names.InputIds, TensorProto.Types.DataType.Int64, Batch, Sequence);
        graph.Input(names.AttentionMask, TensorProto.Types.DataType.Int64, Batch, Total);
        graph.Input(names.PositionIds, TensorProto.Types.DataType.Int64, Batch, Sequence);
        for (int i = 0; i < hp.Layers; i++)
        {
            graph.Input(names.PastKey(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Past, hp.HeadDim);
            graph.Input(names.PastValue(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Past, hp.HeadDim);
        }

        EmitBody(graph, weights, linear, quantizeLmHead, names);

        graph.Output(names.Logits, TensorProto.Types.DataType.Float, Batch, Sequence, hp.VocabSize);
        for (int i = 0; i < hp.Layers; i++)
        {
            graph.Output(names.PresentKey(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Total, hp.HeadDim);
            graph.Output(names.PresentValue(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Total, hp.HeadDim);
        }
    }

    /// <summary>
    /// Emits a model.onnx graph without <c>position_ids</c>: inputs <c>input_ids</c>, <c>attention_mask</c>,
    /// <c>past_key_values.{i}.key|value</c>; positions past_length + arange(sequence_length) computed in the graph
    /// (transformers' GPT2Model when position_ids is None); outputs as <see cref="EmitOptimum"/>.
    /// </summary>
    public static void EmitNoPositionIds(OnnxGraphBuilder graph, Gpt2WeightSource weights, ILinearEmitter linear, bool quantizeLmHead)
    {
        Gpt2Hyperparameters hp = weights.Hyperparameters;
        DecoderTensorNames optimum = DecoderTensorNames.Optimum;
        graph.Input(optimum.InputIds, TensorProto.Types.DataType.Int64, Batch, Sequence);
        graph.Input(optimum.AttentionMask, TensorProto.Types.DataType.Int64, Batch, Total);
        DeclarePast(graph, hp, optimum);
        string positions = EmitArangePositions(graph, optimum);
        EmitBody(graph, weights, linear, quantizeLmHead, optimum with { PositionIds = positions });
        DeclareOutputs(graph, hp, optimum);
    }

    /// <summary>
    /// Emits a legacy merged decoder graph (decoder_model_merged.onnx): inputs <c>input_ids</c>,
    /// <c>attention_mask</c>, <c>past_key_values.{i}.key|value</c>, <c>use_cache_branch</c> bool [1]; an <c>If</c>
    /// on use_cache_branch yields the past (then) or an empty [B, H, 0, D] slice of it (else), which the shared body
    /// reads; positions as <see cref="EmitNoPositionIds"/>. The weights stay in the main graph (as Optimum's merge
    /// deduplicates them), so the file is about as large as the Optimum one.
    /// </summary>
    public static void EmitMerged(OnnxGraphBuilder graph, Gpt2WeightSource weights, ILinearEmitter linear, bool quantizeLmHead)
    {
        Gpt2Hyperparameters hp = weights.Hyperparameters;
        DecoderTensorNames optimum = DecoderTensorNames.Optimum;
        graph.Input(optimum.InputIds, TensorProto.Types.DataType.Int64, Batch, Sequence);
        graph.Input(optimum.AttentionMask, TensorProto.Types.DataType.Int64, Batch, Total);
        DeclarePast(graph, hp, optimum);
        string useCacheBranch = graph.Input("use_cache_branch", TensorProto.Types.DataType.Bool, 1L);

        var thenBranch = new OnnxGraphBuilder("use_cache_branch_true", graph);
        var elseBranch = new OnnxGraphBuilder("use_cache_branch_false", graph);
        string axis2 = elseBranch.Int64Constant("/use_cache_branch/else/const/axis_2", [2]);
        string zero = elseBranch.Int64Constant("/use_cache_branch/else/const/zero", [0]);
        var selected = new List<string>();
        for (int i = 0; i < hp.Layers; i++)
        {
            foreach ((string past, string kind) in new[] { (optimum.PastKey(i), "key"), (optimum.PastValue(i), "value") })
            {
                string outName = $"/use_cache_branch/past.{i}.{kind}";
                string thenOut = thenBranch.Node("Identity", $"/use_cache_branch/then/Identity_{i}_{kind}", [past]);
                thenBranch.Output(thenOut, TensorProto.Types.DataType.Float, Batch, hp.Heads, Past, hp.HeadDim);
                string elseOut = elseBranch.Node("Slice", $"/use_cache_branch/else/Slice_{i}_{kind}", [past, zero, zero, axis2]);
                elseBranch.Output(elseOut, TensorProto.Types.DataType.Float, Batch, hp.Heads, "empty_past_sequence_length", hp.HeadDim);
                selected.Add(outName);
            }
        }

        graph.Node(
            "If",
            "/use_cache_branch/If",
            [useCacheBranch],
            [.. selected],
            [OnnxGraphBuilder.GraphAttribute("then_branch", thenBranch.Graph), OnnxGraphBuilder.GraphAttribute("else_branch", elseBranch.Graph)]);

        var names = optimum with
        {
            PastKey = i => selected[2 * i],
            PastValue = i => selected[(2 * i) + 1],
        };
        string positions = EmitArangePositions(graph, names);
        EmitBody(graph, weights, linear, quantizeLmHead, names with { PositionIds = positions });
        DeclareOutputs(graph, hp, optimum);
    }

    private const string Batch = "batch_size";
    private const string Sequence = "sequence_length";
    private const string Past = "past_sequence_length";
    private const string Total = "past_sequence_length + sequence_length";

    private static void DeclarePast(OnnxGraphBuilder graph, Gpt2Hyperparameters hp, DecoderTensorNames names)
    {
        for (int i = 0; i < hp.Layers; i++)
        {
            graph.Input(names.PastKey(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Past, hp.HeadDim);
            graph.Input(names.PastValue(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Past, hp.HeadDim);
        }
    }

    private static void DeclareOutputs(OnnxGraphBuilder graph, Gpt2Hyperparameters hp, DecoderTensorNames names)
    {
        graph.Output(names.Logits, TensorProto.Types.DataType.Float, Batch, Sequence, hp.VocabSize);
        for (int i = 0; i < hp.Layers; i++)
        {
            graph.Output(names.PresentKey(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Total, hp.HeadDim);
            graph.Output(names.PresentValue(i), TensorProto.Types.DataType.Float, Batch, hp.Heads, Total, hp.HeadDim);
        }
    }

    /// <summary>position ids [1, S] = past_length + arange(S), past_length = mask length − S.</summary>
    private static string EmitArangePositions(OnnxGraphBuilder g, DecoderTensorNames names)
    {
        const string P = "/transformer/position_ids";
        AttributeProto[] dim1 = [OnnxGraphBuilder.IntAttribute("start", 1), OnnxGraphBuilder.IntAttribute("end", 2)];
        string axis0 = g.Int64Constant($"{P}/const/axis_0", [0]);
        string one = g.Int64Constant($"{P}/const/one", [1], scalar: true);
        string sequence = g.Node("Shape", $"{P}/Shape_sequence_length", [names.InputIds], dim1);
        string total = g.Node("Shape", $"{P}/Shape_total_length", [names.AttentionMask], dim1);
        string past = g.Node("Sub", $"{P}/Sub_past_length", [total, sequence]);
        string pastScalar = g.Node("Squeeze", $"{P}/Squeeze_past_length", [past, axis0]);
        string totalScalar = g.Node("Squeeze", $"{P}/Squeeze_total_length", [total, axis0]);
        string range = g.Node("Range", $"{P}/Range", [pastScalar, totalScalar, one]);
        return g.Node("Unsqueeze", $"{P}/Unsqueeze", [range, axis0]);
    }

    /// <summary>Emits the decoder body between the tensors named in <paramref name="names"/>.</summary>
    public static void EmitBody(OnnxGraphBuilder graph, Gpt2WeightSource weights, ILinearEmitter linear, bool quantizeLmHead, DecoderTensorNames names)
    {
        Gpt2Hyperparameters hp = weights.Hyperparameters;
        int e = hp.Embedding;

        // Embeddings: h = wte[input_ids] + wpe[position_ids], [B, S, E].
        WeightTensor wte = weights.TokenEmbedding();
        string wteName = graph.Initializer(wte);
        string wpeName = graph.Initializer(weights.PositionEmbedding());
        string tokens = graph.Node("Gather", "/transformer/wte/Gather", [wteName, names.InputIds]);
        string positions = graph.Node("Gather", "/transformer/wpe/Gather", [wpeName, names.PositionIds]);
        string hidden = graph.Node("Add", "/transformer/Add", [tokens, positions]);

        string allowed = EmitAttentionMask(graph, names);

        var shared = new LayerConstants(
            Allowed: allowed,
            MinValue: graph.FloatScalar("/transformer/const/min_float", float.MinValue),
            ScoreDivisor: graph.FloatScalar("/transformer/const/sqrt_head_dim", (float)Math.Sqrt(hp.HeadDim)),
            SplitSizes: graph.Int64Constant("/transformer/const/qkv_split", [e, e, e]),
            HeadsShape: graph.Int64Constant("/transformer/const/heads_shape", [0, 0, hp.Heads, hp.HeadDim]),
            MergeShape: graph.Int64Constant("/transformer/const/merge_heads_shape", [0, 0, e]),
            GeluCubeExponent: graph.FloatScalar("/transformer/const/gelu_three", 3f),
            GeluCubeCoefficient: graph.FloatScalar("/transformer/const/gelu_0.044715", 0.044715f),
            GeluSqrtTwoOverPi: graph.FloatScalar("/transformer/const/gelu_sqrt_2_over_pi", (float)Math.Sqrt(2.0 / Math.PI)),
            GeluOne: graph.FloatScalar("/transformer/const/gelu_one", 1f),
            GeluHalf: graph.FloatScalar("/transformer/const/gelu_half", 0.5f));

        for (int i = 0; i < hp.Layers; i++)
        {
            hidden = EmitBlock(graph, weights, linear, names, shared, i, hidden);
        }

        string final = LayerNorm(graph, weights, "transformer.ln_f", "/transformer/ln_f", hidden);

        if (quantizeLmHead)
        {
            // A quantized copy of wteᵀ; the Gather above keeps the FP32 transformer.wte.weight.
            DynamicInt8LinearEmitter.Instance.Emit(graph, "/lm_head", final, Transpose(wte, "lm_head.weight"), bias: null, output: names.Logits);
        }
        else
        {
            string wteTransposed = graph.Node("Transpose", "/lm_head/Transpose", [wteName], [OnnxGraphBuilder.IntsAttribute("perm", 1, 0)]);
            graph.Node("MatMul", "/lm_head/MatMul", [final, wteTransposed], output: names.Logits);
        }
    }

    /// <summary>
    /// allowed [B, 1, S, T] (bool): query s (absolute position past + s) may see key t when t ≤ past + s and
    /// attention_mask[b, t] ≠ 0. past = T − S, read from the input shapes, so an empty past works.
    /// </summary>
    private static string EmitAttentionMask(OnnxGraphBuilder g, DecoderTensorNames names)
    {
        const string P = "/transformer/mask";
        AttributeProto[] dim1 = [OnnxGraphBuilder.IntAttribute("start", 1), OnnxGraphBuilder.IntAttribute("end", 2)];
        string axis0 = g.Int64Constant($"{P}/const/axis_0", [0]);
        string axis1 = g.Int64Constant($"{P}/const/axis_1", [1]);
        string axes01 = g.Int64Constant($"{P}/const/axes_0_1", [0, 1]);
        string axes12 = g.Int64Constant($"{P}/const/axes_1_2", [1, 2]);
        string zero = g.Int64Constant($"{P}/const/zero", [0], scalar: true);
        string one = g.Int64Constant($"{P}/const/one", [1], scalar: true);

        string sequence = g.Node("Shape", $"{P}/Shape_sequence_length", [names.InputIds], dim1);
        string total = g.Node("Shape", $"{P}/Shape_total_length", [names.AttentionMask], dim1);
        string past = g.Node("Sub", $"{P}/Sub_past_length", [total, sequence]);
        string pastScalar = g.Node("Squeeze", $"{P}/Squeeze_past_length", [past, axis0]);
        string totalScalar = g.Node("Squeeze", $"{P}/Squeeze_total_length", [total, axis0]);
        string queryPositions = g.Node("Range", $"{P}/Range_query_positions", [pastScalar, totalScalar, one]);
        string keyPositions = g.Node("Range", $"{P}/Range_key_positions", [zero, totalScalar, one]);
        string queryColumn = g.Node("Unsqueeze", $"{P}/Unsqueeze_query_positions", [queryPositions, axis1]);
        string keyRow = g.Node("Unsqueeze", $"{P}/Unsqueeze_key_positions", [keyPositions, axis0]);
        string causal = g.Node("LessOrEqual", $"{P}/LessOrEqual_causal", [keyRow, queryColumn]);
        string causal4 = g.Node("Unsqueeze", $"{P}/Unsqueeze_causal", [causal, axes01]);
        string padding = g.Node(
            "Cast",
            $"{P}/Cast_attention_mask",
            [names.AttentionMask],
            [OnnxGraphBuilder.IntAttribute("to", (long)TensorProto.Types.DataType.Bool)]);
        string padding4 = g.Node("Unsqueeze", $"{P}/Unsqueeze_attention_mask", [padding, axes12]);
        return g.Node("And", $"{P}/And_allowed", [causal4, padding4]);
    }

    private static string EmitBlock(
        OnnxGraphBuilder g, Gpt2WeightSource weights, ILinearEmitter linear, DecoderTensorNames names, LayerConstants c, int layer, string hidden)
    {
        Gpt2Hyperparameters hp = weights.Hyperparameters;
        int e = hp.Embedding;
        string hf = $"transformer.h.{layer}";
        string p = $"/transformer/h.{layer}";

        // Attention.
        string x = LayerNorm(g, weights, $"{hf}.ln_1", $"{p}/ln_1", hidden);
        string qkv = linear.Emit(
            g, $"{p}/attn/c_attn", x, weights.LinearWeight($"{hf}.attn.c_attn.weight", e, 3 * e), weights.LinearBias($"{hf}.attn.c_attn.bias", 3 * e));
        string[] split = g.Node(
            "Split",
            $"{p}/attn/Split",
            [qkv, c.SplitSizes],
            [$"{p}/attn/Split_output_0", $"{p}/attn/Split_output_1", $"{p}/attn/Split_output_2"],
            [OnnxGraphBuilder.IntAttribute("axis", 2)]);
        string query = SplitHeads(g, c, $"{p}/attn/query", split[0]);
        string key = SplitHeads(g, c, $"{p}/attn/key", split[1]);
        string value = SplitHeads(g, c, $"{p}/attn/value", split[2]);

        AttributeProto[] sequenceAxis = [OnnxGraphBuilder.IntAttribute("axis", 2)];
        string presentKey = g.Node("Concat", $"{p}/attn/Concat_key", [names.PastKey(layer), key], sequenceAxis, output: names.PresentKey(layer));
        string presentValue = g.Node("Concat", $"{p}/attn/Concat_value", [names.PastValue(layer), value], sequenceAxis, output: names.PresentValue(layer));

        string keyT = g.Node("Transpose", $"{p}/attn/Transpose_key", [presentKey], [OnnxGraphBuilder.IntsAttribute("perm", 0, 1, 3, 2)]);
        string scores = g.Node("MatMul", $"{p}/attn/MatMul_scores", [query, keyT]);
        string scaled = g.Node("Div", $"{p}/attn/Div_scale", [scores, c.ScoreDivisor]);
        string masked = g.Node("Where", $"{p}/attn/Where_mask", [c.Allowed, scaled, c.MinValue]);
        string probabilities = g.Node("Softmax", $"{p}/attn/Softmax", [masked], [OnnxGraphBuilder.IntAttribute("axis", -1)]);
        string context = g.Node("MatMul", $"{p}/attn/MatMul_context", [probabilities, presentValue]);
        string contextT = g.Node("Transpose", $"{p}/attn/Transpose_context", [context], [OnnxGraphBuilder.IntsAttribute("perm", 0, 2, 1, 3)]);
        string merged = g.Node("Reshape", $"{p}/attn/Reshape_merge_heads", [contextT, c.MergeShape]);
        string attention = linear.Emit(
            g, $"{p}/attn/c_proj", merged, weights.ResidualProjectionWeight($"{hf}.attn.c_proj.weight", e, e), weights.LinearBias($"{hf}.attn.c_proj.bias", e));
        hidden = g.Node("Add", $"{p}/Add_attention_residual", [hidden, attention]);

        // MLP.
        string x2 = LayerNorm(g, weights, $"{hf}.ln_2", $"{p}/ln_2", hidden);
        string fc = linear.Emit(
            g, $"{p}/mlp/c_fc", x2, weights.LinearWeight($"{hf}.mlp.c_fc.weight", e, hp.Inner), weights.LinearBias($"{hf}.mlp.c_fc.bias", hp.Inner));
        string activated = GeluNew(g, c, $"{p}/mlp/act", fc);
        string mlp = linear.Emit(
            g, $"{p}/mlp/c_proj", activated, weights.ResidualProjectionWeight($"{hf}.mlp.c_proj.weight", hp.Inner, e), weights.LinearBias($"{hf}.mlp.c_proj.bias", e));
        return g.Node("Add", $"{p}/Add_mlp_residual", [hidden, mlp]);
    }

    /// <summary>[B, S, E] → [B, H, S, D].</summary>
    private static string SplitHeads(OnnxGraphBuilder g, LayerConstants c, string scope, string input)
    {
        string reshaped = g.Node("Reshape", $"{scope}/Reshape", [input, c.HeadsShape]);
        return g.Node("Transpose", $"{scope}/Transpose", [reshaped], [OnnxGraphBuilder.IntsAttribute("perm", 0, 2, 1, 3)]);
    }

    /// <summary>gelu_new(x) = 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))) (Hugging Face NewGELUActivation), as the exporter writes it.</summary>
    private static string GeluNew(OnnxGraphBuilder g, LayerConstants c, string scope, string x)
    {
        string cube = g.Node("Pow", $"{scope}/Pow", [x, c.GeluCubeExponent]);
        string scaledCube = g.Node("Mul", $"{scope}/Mul_coefficient", [cube, c.GeluCubeCoefficient]);
        string inner = g.Node("Add", $"{scope}/Add_inner", [x, scaledCube]);
        string argument = g.Node("Mul", $"{scope}/Mul_sqrt_2_over_pi", [inner, c.GeluSqrtTwoOverPi]);
        string tanh = g.Node("Tanh", $"{scope}/Tanh", [argument]);
        string onePlus = g.Node("Add", $"{scope}/Add_one", [tanh, c.GeluOne]);
        string half = g.Node("Mul", $"{scope}/Mul_half", [x, c.GeluHalf]);
        return g.Node("Mul", $"{scope}/Mul", [half, onePlus]);
    }

    private static string LayerNorm(OnnxGraphBuilder g, Gpt2WeightSource weights, string hfName, string scope, string input)
    {
        string scale = g.Initializer(weights.LayerNormWeight($"{hfName}.weight"));
        string shift = g.Initializer(weights.LayerNormBias($"{hfName}.bias"));
        return g.Node(
            "LayerNormalization",
            $"{scope}/LayerNormalization",
            [input, scale, shift],
            [OnnxGraphBuilder.IntAttribute("axis", -1), OnnxGraphBuilder.FloatAttribute("epsilon", Gpt2Hyperparameters.LayerNormEpsilon)]);
    }

    /// <summary>[rows, cols] float32 → a new [cols, rows] tensor called <paramref name="name"/> (output rows in parallel).</summary>
    private static WeightTensor Transpose(WeightTensor source, string name)
    {
        int rows = (int)source.Dims[0];
        int cols = (int)source.Dims[1];
        byte[] from = source.Data;
        byte[] data = new byte[from.Length];
        Parallel.For(0, cols, col => CopyColumn(
            MemoryMarshal.Cast<byte, float>(from.AsSpan()),
            cols,
            col,
            MemoryMarshal.Cast<byte, float>(data.AsSpan(col * rows * sizeof(float), rows * sizeof(float)))));
        return new WeightTensor(name, [cols, rows], TensorProto.Types.DataType.Float, data);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code on the one call that matters
    private static void CopyColumn(ReadOnlySpan<float> input, int cols, int col, Span<float> output)
    {
        for (int r = 0; r < output.Length; r++)
        {
            output[r] = input[(r * cols) + col];
        }
    }

    private sealed record LayerConstants(
        string Allowed,
        string MinValue,
        string ScoreDivisor,
        string SplitSizes,
        string HeadsShape,
        string MergeShape,
        string GeluCubeExponent,
        string GeluCubeCoefficient,
        string GeluSqrtTwoOverPi,
        string GeluOne,
        string GeluHalf);
}
