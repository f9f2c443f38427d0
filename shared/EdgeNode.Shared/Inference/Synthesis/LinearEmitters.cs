using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Onnx;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// Emits y = x · W (+ b) for a Conv1D weight W [in, out] that is an initializer. The FP32 and INT8 models differ only
/// in this choice, so every other part of the graph is shared.
/// </summary>
internal interface ILinearEmitter
{
    /// <param name="graph">Graph under construction.</param>
    /// <param name="scope">Node-name prefix, e.g. <c>/transformer/h.0/attn/c_attn</c>.</param>
    /// <param name="input">x, [..., in].</param>
    /// <param name="weight">W [in, out] under its Hugging Face name.</param>
    /// <param name="bias">b [out], or null for no bias (the LM head).</param>
    /// <param name="output">Name of the result tensor, or null for a generated one.</param>
    /// <returns>The name of y, [..., out].</returns>
    string Emit(OnnxGraphBuilder graph, string scope, string input, WeightTensor weight, WeightTensor? bias, string? output = null);
}

/// <summary>FP32: MatMul(x, W) then Add(b), the exporter's pattern for Conv1D.</summary>
internal sealed class Fp32LinearEmitter : ILinearEmitter
{
    public static Fp32LinearEmitter Instance { get; } = new();

    public string Emit(OnnxGraphBuilder graph, string scope, string input, WeightTensor weight, WeightTensor? bias, string? output = null)
    {
        string w = graph.Initializer(weight);
        if (bias is null)
        {
            return graph.Node("MatMul", $"{scope}/MatMul", [input, w], output: output);
        }

        string product = graph.Node("MatMul", $"{scope}/MatMul", [input, w]);
        return graph.Node("Add", $"{scope}/Add", [graph.Initializer(bias), product], output: output);
    }
}

/// <summary>
/// INT8: the QOperator pattern onnxruntime's <c>quantize_dynamic</c> writes for a MatMul with an initializer weight
/// (onnxruntime/python/tools/quantization/operators/matmul.py, <c>MatMulInteger</c> path):
/// <c>DynamicQuantizeLinear(x) → (x_q uint8, x_scale, x_zero_point)</c>,
/// <c>MatMulInteger(x_q, W_quantized, x_zero_point, W_zero_point) → int32</c>, <c>Cast(to float)</c>,
/// <c>Mul(·, x_scale · W_scale)</c>, then the FP32 bias Add. Weights are symmetric per-tensor int8 (see
/// <see cref="SymmetricInt8"/>) named <c>{name}_quantized</c>, <c>{name}_scale</c>, <c>{name}_zero_point</c>.
/// ORT fuses the chain into <c>DynamicQuantizeMatMul</c> at load.
/// </summary>
internal sealed class DynamicInt8LinearEmitter : ILinearEmitter
{
    public static DynamicInt8LinearEmitter Instance { get; } = new();

    public string Emit(OnnxGraphBuilder graph, string scope, string input, WeightTensor weight, WeightTensor? bias, string? output = null)
    {
        SymmetricInt8.Quantized q = SymmetricInt8.Quantize(weight);
        string wq = graph.Initializer(q.Values);
        string wScale = graph.Initializer(q.Scale);
        string wZero = graph.Initializer(q.ZeroPoint);

        string[] xq = graph.Node(
            "DynamicQuantizeLinear",
            $"{scope}/MatMul_QuantizeLinear",
            [input],
            [$"{scope}/MatMul_input_quantized", $"{scope}/MatMul_input_scale", $"{scope}/MatMul_input_zero_point"]);
        string integer = graph.Node("MatMulInteger", $"{scope}/MatMul_quant", [xq[0], wq, xq[2], wZero]);
        string scales = graph.Node("Mul", $"{scope}/MatMul_scales_mul", [xq[1], wScale]);
        string asFloat = graph.Node(
            "Cast",
            $"{scope}/MatMul_output_quantized_cast",
            [integer],
            [OnnxGraphBuilder.IntAttribute("to", (long)TensorProto.Types.DataType.Float)]);
        if (bias is null)
        {
            return graph.Node("Mul", $"{scope}/MatMul_output_quantized_mul", [asFloat, scales], output: output);
        }

        string product = graph.Node("Mul", $"{scope}/MatMul_output_quantized_mul", [asFloat, scales]);
        return graph.Node("Add", $"{scope}/Add", [graph.Initializer(bias), product], output: output);
    }
}

/// <summary>
/// Symmetric per-tensor int8 quantization of a float32 weight, as <c>quantize_dynamic</c> does for int8 weights
/// (symmetric, zero point 0): scale = max|w| / 127, q = clamp(round_half_even(w / scale), −127, 127), so that
/// w ≈ q · scale. Computed in double and rounded once, hence identical on every machine.
/// </summary>
internal static class SymmetricInt8
{
    /// <summary>The three initializers that replace one FP32 weight.</summary>
    /// <param name="Values"><c>{name}_quantized</c>, int8, same dims as the FP32 weight.</param>
    /// <param name="Scale"><c>{name}_scale</c>, float32 scalar.</param>
    /// <param name="ZeroPoint"><c>{name}_zero_point</c>, int8 scalar 0.</param>
    internal sealed record Quantized(WeightTensor Values, WeightTensor Scale, WeightTensor ZeroPoint);

    public static Quantized Quantize(WeightTensor weight) => Quantize(weight, weight.Name);

    /// <summary>Quantizes <paramref name="weight"/> under the base name <paramref name="name"/>.</summary>
    public static Quantized Quantize(WeightTensor weight, string name)
    {
        byte[] source = weight.Data;
        int length = source.Length / sizeof(float);
        int chunks = (length + ChunkLength - 1) / ChunkLength;

        // max is exact and order-independent, so the parallel reduction is deterministic.
        float[] chunkMax = new float[chunks];
        Parallel.For(0, chunks, c => chunkMax[c] = AbsMax(Chunk(source, c, length)));
        float absMax = chunks == 0 ? 0f : chunkMax.Max();

        float scale = absMax == 0f ? 1f : (float)(absMax / 127.0);
        byte[] q = new byte[length];
        Parallel.For(0, chunks, c => Quantize(Chunk(source, c, length), scale, q.AsSpan(c * ChunkLength)));

        byte[] scaleBytes = BitConverter.GetBytes(scale);
        return new Quantized(
            new WeightTensor($"{name}_quantized", [.. weight.Dims], TensorProto.Types.DataType.Int8, q),
            new WeightTensor($"{name}_scale", [], TensorProto.Types.DataType.Float, scaleBytes),
            new WeightTensor($"{name}_zero_point", [], TensorProto.Types.DataType.Int8, [0]));
    }

    private const int ChunkLength = 1 << 20;

    private static ReadOnlySpan<float> Chunk(byte[] source, int chunk, int length)
    {
        int start = chunk * ChunkLength;
        int count = Math.Min(ChunkLength, length - start);
        return MemoryMarshal.Cast<byte, float>(source.AsSpan(start * sizeof(float), count * sizeof(float)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code on the one call that matters
    private static float AbsMax(ReadOnlySpan<float> values)
    {
        float absMax = 0f;
        foreach (float v in values)
        {
            absMax = Math.Max(absMax, Math.Abs(v));
        }

        return absMax;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code on the one call that matters
    private static void Quantize(ReadOnlySpan<float> values, double scale, Span<byte> destination)
    {
        for (int i = 0; i < values.Length; i++)
        {
            double r = Math.Round(values[i] / scale, MidpointRounding.ToEven);
            destination[i] = unchecked((byte)(sbyte)Math.Clamp(r, -127.0, 127.0));
        }
    }
}
