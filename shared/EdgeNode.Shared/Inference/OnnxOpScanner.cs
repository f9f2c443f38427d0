namespace EdgeNode.Shared.Inference;

/// <summary>
/// Lists the operator types of an ONNX file without loading its weights: a minimal protobuf
/// walk over ModelProto.graph (field 7) → GraphProto.node (field 1) → NodeProto.op_type
/// (field 4), descending into subgraph attributes (AttributeProto.g = 6, graphs = 11, as in
/// merged decoders' If branches). Initializers and every other field are skipped with a seek,
/// so a 500 MB FP32 file costs a few reads. Field numbers: onnx/onnx.proto3.
/// </summary>
internal static class OnnxOpScanner
{
    /// <summary>Operators that only appear in quantized graphs (quantize_dynamic QOperator, ORT fusions, QDQ).</summary>
    private static readonly HashSet<string> Int8Ops = new(StringComparer.Ordinal)
    {
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QLinearMatMul",
        "QuantizeLinear",
        "DequantizeLinear",
        "QAttention",
    };

    private const int WireVarint = 0;
    private const int WireFixed64 = 1;
    private const int WireLengthDelimited = 2;
    private const int WireFixed32 = 5;
    private const int MaxDepth = 16;

    /// <summary>"int8" if the file's graph holds a quantized operator, else "fp32".</summary>
    /// <exception cref="InvalidDataException">The file is not a well-formed protobuf message.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static string DetectPrecision(string path)
    {
        return PrecisionOf(ReadOpTypes(path));
    }

    /// <summary>The distinct op_type values of every node in the model's graph and subgraphs.</summary>
    /// <exception cref="InvalidDataException">The file is not a well-formed protobuf message.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static HashSet<string> ReadOpTypes(string path) => Read(path).Ops;

    /// <summary>
    /// True when <paramref name="ops"/> holds the dynamic (QOperator) INT8 operators of
    /// <c>quantize_dynamic</c>: ONNX Runtime's CUDA provider runs those on the CPU with copies and
    /// TensorRT cannot take them (notes/onnxruntime.md; ORT issues 7745, 12229), so such files are CPU-only.
    /// QDQ files (QuantizeLinear/DequantizeLinear only) are not dynamic INT8.
    /// </summary>
    public static bool IsDynamicInt8(IReadOnlySet<string> ops)
    {
        ArgumentNullException.ThrowIfNull(ops);
        return ops.Contains("DynamicQuantizeLinear") || ops.Contains("MatMulInteger") ||
               ops.Contains("DynamicQuantizeMatMul") || ops.Contains("MatMulIntegerToFloat");
    }

    /// <summary>"int8" when <paramref name="ops"/> holds a quantized operator, else "fp32".</summary>
    public static string PrecisionOf(IReadOnlySet<string> ops) => ops.Overlaps(Int8Ops) ? "int8" : "fp32";

    /// <summary>
    /// The op types of every node (graph and subgraphs) and the main graph's inputs
    /// (GraphProto.input = 11 → ValueInfoProto name 1, type 2 → TypeProto.tensor_type 1 →
    /// elem_type 1, shape 2 → dim 1 → dim_value 1 | dim_param 2).
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a well-formed protobuf message.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static OnnxFileSummary Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 64 * 1024);
        var ops = new HashSet<string>(StringComparer.Ordinal);
        var inputs = new List<ScannedInput>();
        var reader = new ProtoReader(stream);
        while (reader.Position < stream.Length)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 7 && wire == WireLengthDelimited)
            {
                long end = reader.ReadLengthEnd();
                ReadGraph(reader, end, ops, depth: 0, inputs);
            }
            else
            {
                reader.Skip(wire);
            }
        }

        return new OnnxFileSummary(ops, inputs);
    }

    private static void ReadGraph(ProtoReader reader, long end, HashSet<string> ops, int depth, List<ScannedInput>? inputs = null)
    {
        if (depth > MaxDepth)
        {
            throw new InvalidDataException("ONNX subgraphs nested too deeply");
        }

        while (reader.Position < end)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 1 && wire == WireLengthDelimited)
            {
                long nodeEnd = reader.ReadLengthEnd();
                ReadNode(reader, nodeEnd, ops, depth);
            }
            else if (field == 11 && wire == WireLengthDelimited && inputs is not null)
            {
                long inputEnd = reader.ReadLengthEnd();
                inputs.Add(ReadValueInfo(reader, inputEnd));
            }
            else
            {
                reader.Skip(wire);
            }
        }

        reader.ExpectPosition(end);
    }

    private static void ReadNode(ProtoReader reader, long end, HashSet<string> ops, int depth)
    {
        while (reader.Position < end)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 4 && wire == WireLengthDelimited)
            {
                ops.Add(reader.ReadString());
            }
            else if (field == 5 && wire == WireLengthDelimited)
            {
                long attributeEnd = reader.ReadLengthEnd();
                ReadAttribute(reader, attributeEnd, ops, depth);
            }
            else
            {
                reader.Skip(wire);
            }
        }

        reader.ExpectPosition(end);
    }

    private static void ReadAttribute(ProtoReader reader, long end, HashSet<string> ops, int depth)
    {
        while (reader.Position < end)
        {
            var (field, wire) = reader.ReadTag();
            if ((field == 6 || field == 11) && wire == WireLengthDelimited)
            {
                long graphEnd = reader.ReadLengthEnd();
                ReadGraph(reader, graphEnd, ops, depth + 1);
            }
            else
            {
                reader.Skip(wire);
            }
        }

        reader.ExpectPosition(end);
    }

    private static ScannedInput ReadValueInfo(ProtoReader reader, long end)
    {
        string name = string.Empty;
        int elementType = 0;
        var dims = new List<long>();
        while (reader.Position < end)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 1 && wire == WireLengthDelimited)
            {
                name = reader.ReadString();
            }
            else if (field == 2 && wire == WireLengthDelimited)
            {
                long typeEnd = reader.ReadLengthEnd();
                ForEachMessage(reader, typeEnd, 1, tensorEnd =>
                {
                    while (reader.Position < tensorEnd)
                    {
                        var (f, w) = reader.ReadTag();
                        if (f == 1 && w == WireVarint)
                        {
                            elementType = (int)reader.ReadVarint();
                        }
                        else if (f == 2 && w == WireLengthDelimited)
                        {
                            long shapeEnd = reader.ReadLengthEnd();
                            ForEachMessage(reader, shapeEnd, 1, dimEnd =>
                            {
                                long dim = -1;
                                while (reader.Position < dimEnd)
                                {
                                    var (df, dw) = reader.ReadTag();
                                    if (df == 1 && dw == WireVarint)
                                    {
                                        dim = (long)reader.ReadVarint();
                                    }
                                    else
                                    {
                                        reader.Skip(dw);
                                    }
                                }

                                dims.Add(dim);
                            });
                        }
                        else
                        {
                            reader.Skip(w);
                        }
                    }
                });
            }
            else
            {
                reader.Skip(wire);
            }
        }

        reader.ExpectPosition(end);
        return new ScannedInput(name, elementType, dims);
    }

    /// <summary>Calls <paramref name="read"/> with the end of each length-delimited field <paramref name="fieldNumber"/> up to <paramref name="end"/>; skips the rest.</summary>
    private static void ForEachMessage(ProtoReader reader, long end, int fieldNumber, Action<long> read)
    {
        while (reader.Position < end)
        {
            var (field, wire) = reader.ReadTag();
            if (field == fieldNumber && wire == WireLengthDelimited)
            {
                long messageEnd = reader.ReadLengthEnd();
                read(messageEnd);
                reader.ExpectPosition(messageEnd);
            }
            else
            {
                reader.Skip(wire);
            }
        }

        reader.ExpectPosition(end);
    }

    /// <summary>Reads protobuf wire primitives from a seekable stream.</summary>
    private sealed class ProtoReader(Stream stream)
    {
        private const int MaxStringBytes = 4096;

        public long Position => stream.Position;

        public (int Field, int Wire) ReadTag()
        {
            ulong tag = ReadVarint();
            int field = checked((int)(tag >> 3));
            if (field == 0)
            {
                throw new InvalidDataException("protobuf field number 0");
            }

            return (field, (int)(tag & 7));
        }

        public long ReadLengthEnd()
        {
            ulong length = ReadVarint();
            long end = Position + (long)length;
            if (length > (ulong)stream.Length || end > stream.Length)
            {
                throw new InvalidDataException("protobuf length runs past the end of the file");
            }

            return end;
        }

        public string ReadString()
        {
            long end = ReadLengthEnd();
            int length = (int)(end - Position);
            if (length > MaxStringBytes)
            {
                stream.Position = end;
                return string.Empty;
            }

            Span<byte> bytes = stackalloc byte[length];
            stream.ReadExactly(bytes);
            return System.Text.Encoding.UTF8.GetString(bytes);
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case WireVarint:
                    ReadVarint();
                    break;
                case WireFixed64:
                    SeekTo(Position + 8);
                    break;
                case WireLengthDelimited:
                    SeekTo(ReadLengthEnd());
                    break;
                case WireFixed32:
                    SeekTo(Position + 4);
                    break;
                default:
                    throw new InvalidDataException($"unsupported protobuf wire type {wire}");
            }
        }

        public void ExpectPosition(long end)
        {
            if (Position != end)
            {
                throw new InvalidDataException("protobuf message overruns its length");
            }
        }

        private void SeekTo(long position)
        {
            if (position > stream.Length)
            {
                throw new InvalidDataException("protobuf field runs past the end of the file");
            }

            stream.Position = position;
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                int b = stream.ReadByte();
                if (b < 0)
                {
                    throw new InvalidDataException("protobuf varint cut off by the end of the file");
                }

                result |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    return result;
                }
            }

            throw new InvalidDataException("protobuf varint longer than 10 bytes");
        }
    }
}

/// <summary>What <see cref="OnnxOpScanner.Read"/> found: op types and the main graph's inputs.</summary>
internal sealed record OnnxFileSummary(HashSet<string> Ops, IReadOnlyList<ScannedInput> Inputs);

/// <summary>A graph input: TensorProto.DataType number (1 float, 7 int64, 9 bool) and dims (-1 symbolic or unknown).</summary>
internal sealed record ScannedInput(string Name, int ElementType, IReadOnlyList<long> Dims);
