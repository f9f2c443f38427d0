using System.Runtime.InteropServices;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// One initializer's data before it becomes a <c>TensorProto</c>: its Hugging Face name, dims, ONNX element type
/// and raw little-endian bytes (ONNX <c>raw_data</c> layout, row-major).
/// </summary>
internal sealed class WeightTensor
{
    public WeightTensor(string name, long[] dims, Onnx.TensorProto.Types.DataType dataType, byte[] data)
    {
        Name = name;
        Dims = dims;
        DataType = dataType;
        Data = data;
    }

    public string Name { get; }

    public IReadOnlyList<long> Dims { get; }

    public Onnx.TensorProto.Types.DataType DataType { get; }

    /// <summary>Raw bytes; for float32 tensors 4 bytes per element, little-endian.</summary>
    public byte[] Data { get; }

    /// <summary>The float32 values (valid only for <see cref="Onnx.TensorProto.Types.DataType.Float"/> tensors).</summary>
    public ReadOnlySpan<float> Floats => MemoryMarshal.Cast<byte, float>(Data);

    public static long ElementCount(IReadOnlyList<long> dims)
    {
        long count = 1;
        foreach (long d in dims)
        {
            count *= d;
        }

        return count;
    }
}
