using Google.Protobuf;
using Onnx;

namespace EdgeNode.Shared.Tests.Inference;

/// <summary>Edits synthesized ONNX models with OnnxSharp to build files the loader must refuse or special cases.</summary>
internal static class ModelSurgery
{
    /// <summary>Renames a graph input everywhere it is used: the graph stays valid, the signature does not.</summary>
    public static byte[] RenameInput(byte[] model, string from, string to)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        var input = proto.Graph.Input.Single(i => i.Name == from);
        input.Name = to;
        foreach (var node in proto.Graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == from)
                {
                    node.Input[i] = to;
                }
            }
        }

        return proto.ToByteArray();
    }

    /// <summary>Removes a graph output (its value stays an intermediate): a valid graph lacking that output.</summary>
    public static byte[] RemoveOutput(byte[] model, string name)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        proto.Graph.Output.Remove(proto.Graph.Output.Single(o => o.Name == name));
        return proto.ToByteArray();
    }

    /// <summary>
    /// Makes &lt;|endoftext|&gt; win at every position whose position id is at least
    /// <paramref name="fromPosition"/>: logits += 1000 · onehot(eos) · (position_ids >= fromPosition).
    /// Logits at position p choose the token at p + 1, so with a prompt of fromPosition tokens the
    /// first generated token is the model's own and the second is EOS.
    /// </summary>
    public static byte[] ForceEndOfTextFrom(byte[] model, long fromPosition, int eosId, int vocabSize)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        var graph = proto.Graph;
        var producer = graph.Node.Single(n => n.Output.Contains("logits"));
        producer.Output[producer.Output.IndexOf("logits")] = "logits_raw";

        var threshold = new TensorProto { Name = "eos_threshold", DataType = (int)TensorProto.Types.DataType.Int64 };
        threshold.Int64Data.Add(fromPosition - 1);
        var axes = new TensorProto { Name = "eos_axes", DataType = (int)TensorProto.Types.DataType.Int64 };
        axes.Dims.Add(1);
        axes.Int64Data.Add(2);
        var bias = new TensorProto { Name = "eos_bias", DataType = (int)TensorProto.Types.DataType.Float };
        bias.Dims.Add(vocabSize);
        for (int i = 0; i < vocabSize; i++)
        {
            bias.FloatData.Add(i == eosId ? 1000f : 0f);
        }

        graph.Initializer.Add(threshold);
        graph.Initializer.Add(axes);
        graph.Initializer.Add(bias);
        graph.Node.Add(Node("Greater", ["position_ids", "eos_threshold"], "eos_after"));
        var cast = Node("Cast", ["eos_after"], "eos_after_f");
        cast.Attribute.Add(new AttributeProto { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = (long)TensorProto.Types.DataType.Float });
        graph.Node.Add(cast);
        graph.Node.Add(Node("Unsqueeze", ["eos_after_f", "eos_axes"], "eos_gate"));
        graph.Node.Add(Node("Mul", ["eos_gate", "eos_bias"], "eos_boost"));
        graph.Node.Add(Node("Add", ["logits_raw", "eos_boost"], "logits"));
        return proto.ToByteArray();
    }

    /// <summary>
    /// Forces a continuation: the logits at position id <c>start - 1 + k</c> get +1000 on
    /// <paramref name="tokens"/>[k], so with a prompt of <paramref name="start"/> tokens the model emits exactly
    /// <paramref name="tokens"/> (greedy) and then its own choices. A table [tokens + 1, vocab] is gathered
    /// at min(max(position_ids − (start − 1), 0), tokens) (the last row is zero); positions before start −1 hit
    /// row 0 too, which only changes prompt-position logits nobody samples.
    /// </summary>
    public static byte[] ForceTokensFrom(byte[] model, long start, IReadOnlyList<int> tokens, int vocabSize)
    {
        var proto = ModelProto.Parser.ParseFrom(model);
        var graph = proto.Graph;
        var producer = graph.Node.Single(n => n.Output.Contains("logits"));
        producer.Output[producer.Output.IndexOf("logits")] = "logits_raw";

        var offset = new TensorProto { Name = "force_offset", DataType = (int)TensorProto.Types.DataType.Int64 };
        offset.Int64Data.Add(start - 1);
        var low = new TensorProto { Name = "force_low", DataType = (int)TensorProto.Types.DataType.Int64 };
        low.Int64Data.Add(0);
        var high = new TensorProto { Name = "force_high", DataType = (int)TensorProto.Types.DataType.Int64 };
        high.Int64Data.Add(tokens.Count);
        var table = new TensorProto { Name = "force_table", DataType = (int)TensorProto.Types.DataType.Float };
        table.Dims.Add(tokens.Count + 1);
        table.Dims.Add(vocabSize);
        var values = new float[(tokens.Count + 1) * vocabSize];
        for (int k = 0; k < tokens.Count; k++)
        {
            values[(k * vocabSize) + tokens[k]] = 1000f;
        }

        table.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        graph.Initializer.Add(offset);
        graph.Initializer.Add(low);
        graph.Initializer.Add(high);
        graph.Initializer.Add(table);
        graph.Node.Add(Node("Sub", ["position_ids", "force_offset"], "force_shifted"));
        graph.Node.Add(Node("Clip", ["force_shifted", "force_low", "force_high"], "force_row"));
        graph.Node.Add(Node("Gather", ["force_table", "force_row"], "force_boost"));
        graph.Node.Add(Node("Add", ["logits_raw", "force_boost"], "logits"));
        return proto.ToByteArray();
    }

    private static NodeProto Node(string opType, string[] inputs, string output)
    {
        var node = new NodeProto { OpType = opType, Name = "test_" + output };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        return node;
    }
}
