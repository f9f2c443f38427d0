using System.Buffers.Binary;
using Google.Protobuf;
using Onnx;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// Appends nodes, initializers, inputs and outputs to an ONNX <see cref="GraphProto"/> in call order (so the
/// serialized bytes are deterministic). Node outputs are named <c>{nodeName}_output_{i}</c> like the PyTorch exporter
/// does, unless a name is given. Operator semantics: ONNX operator specs, opset 17
/// (https://onnx.ai/onnx/operators/).
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);
    private readonly HashSet<string> _nodeNames = new(StringComparer.Ordinal);

    private readonly OnnxGraphBuilder? _outerScope;

    /// <param name="graphName">GraphProto.name.</param>
    /// <param name="outerScope">
    /// For a subgraph (the branches of an <c>If</c> node, as the merged decoder layout needs): the enclosing graph,
    /// whose tensors the subgraph may read.
    /// </param>
    public OnnxGraphBuilder(string graphName, OnnxGraphBuilder? outerScope = null)
    {
        Graph = new GraphProto { Name = graphName };
        _outerScope = outerScope;
    }

    public GraphProto Graph { get; }

    /// <summary>Declares a graph input. Each dim is a <see cref="string"/> (symbolic) or a <see cref="long"/> (fixed).</summary>
    public string Input(string name, TensorProto.Types.DataType elementType, params object[] dims)
    {
        Claim(name);
        Graph.Input.Add(ValueInfo(name, elementType, dims));
        return name;
    }

    /// <summary>Declares a graph output (a tensor some node already produces).</summary>
    public void Output(string name, TensorProto.Types.DataType elementType, params object[] dims)
    {
        if (!_tensorNames.Contains(name))
        {
            throw new InvalidOperationException($"Graph output '{name}' is not produced by any node.");
        }

        Graph.Output.Add(ValueInfo(name, elementType, dims));
    }

    /// <summary>Adds an initializer; its bytes are wrapped, not copied.</summary>
    public string Initializer(WeightTensor tensor)
    {
        Claim(tensor.Name);
        var proto = new TensorProto
        {
            Name = tensor.Name,
            DataType = (int)tensor.DataType,
            RawData = UnsafeByteOperations.UnsafeWrap(tensor.Data),
        };
        proto.Dims.AddRange(tensor.Dims);
        Graph.Initializer.Add(proto);
        return tensor.Name;
    }

    /// <summary>An int64 initializer of shape [values.Length] (or a scalar when <paramref name="scalar"/>).</summary>
    public string Int64Constant(string name, long[] values, bool scalar = false)
    {
        byte[] data = new byte[values.Length * sizeof(long)];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(i * sizeof(long)), values[i]);
        }

        long[] dims = scalar ? [] : [values.Length];
        return Initializer(new WeightTensor(name, dims, TensorProto.Types.DataType.Int64, data));
    }

    /// <summary>A float32 scalar initializer.</summary>
    public string FloatScalar(string name, float value)
    {
        byte[] data = new byte[sizeof(float)];
        BinaryPrimitives.WriteSingleLittleEndian(data, value);
        return Initializer(new WeightTensor(name, [], TensorProto.Types.DataType.Float, data));
    }

    /// <summary>Adds a node with one output named <c>{name}_output_0</c> (or <paramref name="output"/>) and returns that name.</summary>
    public string Node(string opType, string name, string[] inputs, AttributeProto[]? attributes = null, string? output = null) =>
        Node(opType, name, inputs, [output ?? $"{name}_output_0"], attributes)[0];

    /// <summary>Adds a node with the given output names and returns them.</summary>
    public string[] Node(string opType, string name, string[] inputs, string[] outputs, AttributeProto[]? attributes = null)
    {
        if (!_nodeNames.Add(name))
        {
            throw new InvalidOperationException($"Duplicate node name '{name}'.");
        }

        foreach (string input in inputs)
        {
            if (input.Length != 0 && !IsVisible(input))
            {
                throw new InvalidOperationException($"Node '{name}' reads '{input}' before anything produces it.");
            }
        }

        var node = new NodeProto { Name = name, OpType = opType };
        node.Input.AddRange(inputs);
        foreach (string output in outputs)
        {
            Claim(output);
        }

        node.Output.AddRange(outputs);
        if (attributes is not null)
        {
            node.Attribute.AddRange(attributes);
        }

        Graph.Node.Add(node);
        return outputs;
    }

    public static AttributeProto IntAttribute(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto FloatAttribute(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>A GRAPH attribute (the then_branch / else_branch of an If).</summary>
    public static AttributeProto GraphAttribute(string name, GraphProto graph) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Graph, G = graph };

    public static AttributeProto IntsAttribute(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    private bool IsVisible(string tensorName) =>
        _tensorNames.Contains(tensorName) || (_outerScope?.IsVisible(tensorName) ?? false);

    private void Claim(string tensorName)
    {
        if (!_tensorNames.Add(tensorName))
        {
            throw new InvalidOperationException($"Tensor name '{tensorName}' is produced twice.");
        }
    }

    private static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType elementType, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (object dim in dims)
        {
            shape.Dim.Add(dim switch
            {
                string symbol => new TensorShapeProto.Types.Dimension { DimParam = symbol },
                long value => new TensorShapeProto.Types.Dimension { DimValue = value },
                int value => new TensorShapeProto.Types.Dimension { DimValue = value },
                _ => throw new ArgumentException($"Dim of '{name}' must be a string or an integer.", nameof(dims)),
            });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)elementType, Shape = shape } },
        };
    }
}
