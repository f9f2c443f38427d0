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
        var ops = ReadOpTypes(path);
        return ops.Overlaps(Int8Ops) ? "int8" : "fp32";
    }

    /// <summary>The distinct op_type values of every node in the model's graph and subgraphs.</summary>
    /// <exception cref="InvalidDataException">The file is not a well-formed protobuf message.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static HashSet<string> ReadOpTypes(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 64 * 1024);
        var ops = new HashSet<string>(StringComparer.Ordinal);
        var reader = new ProtoReader(stream);
        while (reader.Position < stream.Length)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 7 && wire == WireLengthDelimited)
            {
                long end = reader.ReadLengthEnd();
                ReadGraph(reader, end, ops, depth: 0);
            }
            else
            {
                reader.Skip(wire);
            }
        }

        return ops;
    }

    private static void ReadGraph(ProtoReader reader, long end, HashSet<string> ops, int depth)
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

        private ulong ReadVarint()
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
