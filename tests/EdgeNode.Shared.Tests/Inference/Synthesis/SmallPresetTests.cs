using EdgeNode.Shared.Inference.Synthesis;
using Onnx;

namespace EdgeNode.Shared.Tests.Inference.Synthesis;

/// <summary>
/// The small preset has the GPT-2 124M shape. Builds the ModelProto without serializing it (~0.5 GB of weights), so
/// it runs in the non-parallel ONNX collection to keep memory peaks apart.
/// </summary>
[Collection(OnnxCollectionDefinition.Name)]
public sealed class SmallPresetTests
{
    [Fact]
    public void Build_SmallFp32_HasGpt2SmallShapeAnd124439808Parameters()
    {
        ModelProto model = ModelSynthesizer.Build(new SynthesisOptions(ModelPreset.Small, ModelPrecision.Fp32, QuantizeLmHead: false, Seed: 1));

        Dictionary<string, TensorProto> inits = model.Graph.Initializer.ToDictionary(t => t.Name);
        long parameters = inits.Values
            .Where(t => t.Name.StartsWith("transformer.", StringComparison.Ordinal))
            .Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));
        Assert.Equal(124_439_808, parameters);
        Assert.Equal([50257, 768], inits["transformer.wte.weight"].Dims);
        Assert.Equal([768, 2304], inits["transformer.h.11.attn.c_attn.weight"].Dims);
        Assert.Equal([3072, 768], inits["transformer.h.11.mlp.c_proj.weight"].Dims);
        Assert.False(inits.ContainsKey("transformer.h.12.ln_1.weight"));
        Assert.Equal(24, model.Graph.Input.Count(i => i.Name.StartsWith("past_key_values.", StringComparison.Ordinal)));
        Assert.All(
            model.Graph.Input.Where(i => i.Name.StartsWith("past_key_values.", StringComparison.Ordinal)),
            i => Assert.Equal([12, 64], new[] { i.Type.TensorType.Shape.Dim[1].DimValue, i.Type.TensorType.Shape.Dim[3].DimValue }));
    }
}
