using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using EdgeNode.Shared.Inference.Synthesis;
using Onnx;

namespace EdgeNode.Shared.Tests.Inference.Synthesis;

/// <summary>The file-level contract of synthesized models, read back with OnnxSharp (no ONNX Runtime).</summary>
public sealed class ModelSynthesizerTests
{
    private const int E = 64;
    private const int V = 50257;

    private static readonly string[] LinearWeights =
    [
        "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight",
        "transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.c_proj.weight", "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight",
    ];

    [Theory]
    [InlineData("fp32")]
    [InlineData("int8")]
    [InlineData("int8-lm-head")]
    public void Synthesize_SameOptionsTwice_IdenticalBytes(string variant)
    {
        byte[] first = ModelSynthesizer.Synthesize(TestModels.Tiny(variant));
        byte[] second = ModelSynthesizer.Synthesize(TestModels.Tiny(variant));

        Assert.Equal(SHA256.HashData(first), SHA256.HashData(second));
        Assert.True(first.AsSpan().SequenceEqual(second));
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("int8")]
    [InlineData("int8-lm-head")]
    public void Synthesize_DifferentSeed_DifferentBytes(string variant)
    {
        SynthesisOptions options = TestModels.Tiny(variant);

        byte[] a = ModelSynthesizer.Synthesize(options);
        byte[] b = ModelSynthesizer.Synthesize(options with { Seed = options.Seed + 1 });

        Assert.False(a.AsSpan().SequenceEqual(b));
    }

    /// <summary>
    /// Pins the exact bytes, so a machine or runtime that computes different weights (or a recipe change that
    /// forgot to bump <see cref="ModelSynthesizer.GeneratorVersion"/>) is caught. When the recipe changes on
    /// purpose, bump GeneratorVersion and update these hashes.
    /// </summary>
    [Theory]
    [InlineData("fp32", "8a33fc42b3aebd46059d559517c74cf7e25b443db5a7f5110456d909ef091abe")]
    [InlineData("int8", "b762d2a0c2d741164812a157abf5db184276a488a21f654a545fc44375ac158f")]
    [InlineData("int8-lm-head", "2442713e3e30388af4697b160261df63af41a8f9e30ff1e7b26a90189cdb752c")]
    public void Synthesize_TinySeed42_PinnedSha256(string variant, string expectedSha256)
    {
        byte[] bytes = TestModels.Get(TestModels.Tiny(variant));

        Assert.Equal(expectedSha256, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    [Fact]
    public void Synthesize_TinyFp32_HeaderIsIr8Opset17EdgenodeSynth()
    {
        ModelProto model = Parse(TestModels.TinyFp32);

        Assert.Equal(8, model.IrVersion);
        OperatorSetIdProto opset = Assert.Single(model.OpsetImport);
        Assert.Equal(string.Empty, opset.Domain);
        Assert.Equal(17, opset.Version);
        Assert.Equal("edgenode-synth", model.ProducerName);
        Assert.Equal(ModelSynthesizer.GeneratorVersion, model.ProducerVersion);
    }

    [Fact]
    public void Synthesize_TinyFp32_HuggingFaceInitializerNamesAndShapes()
    {
        Dictionary<string, TensorProto> inits = Parse(TestModels.TinyFp32).Graph.Initializer.ToDictionary(t => t.Name);

        var expected = new Dictionary<string, long[]>
        {
            ["transformer.wte.weight"] = [V, E],
            ["transformer.wpe.weight"] = [1024, E],
            ["transformer.ln_f.weight"] = [E],
            ["transformer.ln_f.bias"] = [E],
        };
        for (int i = 0; i < 2; i++)
        {
            string p = $"transformer.h.{i}";
            expected[$"{p}.ln_1.weight"] = [E];
            expected[$"{p}.ln_1.bias"] = [E];
            expected[$"{p}.attn.c_attn.weight"] = [E, 3 * E];
            expected[$"{p}.attn.c_attn.bias"] = [3 * E];
            expected[$"{p}.attn.c_proj.weight"] = [E, E];
            expected[$"{p}.attn.c_proj.bias"] = [E];
            expected[$"{p}.ln_2.weight"] = [E];
            expected[$"{p}.ln_2.bias"] = [E];
            expected[$"{p}.mlp.c_fc.weight"] = [E, 4 * E];
            expected[$"{p}.mlp.c_fc.bias"] = [4 * E];
            expected[$"{p}.mlp.c_proj.weight"] = [4 * E, E];
            expected[$"{p}.mlp.c_proj.bias"] = [E];
        }

        foreach ((string name, long[] dims) in expected)
        {
            Assert.True(inits.TryGetValue(name, out TensorProto? tensor), $"missing initializer {name}");
            Assert.Equal(dims, tensor.Dims);
            Assert.Equal((int)TensorProto.Types.DataType.Float, tensor.DataType);
            Assert.Equal(dims.Aggregate(1L, (a, b) => a * b) * sizeof(float), tensor.RawData.Length);
        }

        Assert.All(Floats(inits["transformer.h.0.ln_1.weight"]).ToArray(), v => Assert.Equal(1f, v));
        Assert.All(Floats(inits["transformer.h.0.ln_1.bias"]).ToArray(), v => Assert.Equal(0f, v));
        Assert.DoesNotContain(inits.Keys, n => n.StartsWith("lm_head", StringComparison.Ordinal));
    }

    [Fact]
    public void Synthesize_TinyFp32_LmHeadIsTiedToWte()
    {
        GraphProto graph = Parse(TestModels.TinyFp32).Graph;

        NodeProto transpose = Assert.Single(graph.Node, n => n.OpType == "Transpose" && n.Input[0] == "transformer.wte.weight");
        NodeProto head = Assert.Single(graph.Node, n => n.Output.Contains("logits"));
        Assert.Equal("MatMul", head.OpType);
        Assert.Equal(transpose.Output[0], head.Input[1]);
    }

    [Theory]
    [InlineData("int8")]
    [InlineData("int8-lm-head")]
    public void Synthesize_TinyInt8_EveryLinearWeightUsesQuantizeDynamicPattern(string variant)
    {
        GraphProto graph = Parse(TestModels.Tiny(variant)).Graph;
        Dictionary<string, TensorProto> inits = graph.Initializer.ToDictionary(t => t.Name);
        Dictionary<string, NodeProto> producers = graph.Node.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(x => x.o, x => x.n);

        foreach (string name in LinearWeights)
        {
            Assert.False(inits.ContainsKey(name), $"FP32 {name} should be replaced by {name}_quantized");
            TensorProto q = inits[$"{name}_quantized"];
            TensorProto scale = inits[$"{name}_scale"];
            TensorProto zero = inits[$"{name}_zero_point"];
            Assert.Equal((int)TensorProto.Types.DataType.Int8, q.DataType);
            Assert.Equal(2, q.Dims.Count);
            Assert.Equal((int)TensorProto.Types.DataType.Float, scale.DataType);
            Assert.Empty(scale.Dims);
            Assert.True(Floats(scale)[0] > 0f);
            Assert.Equal((int)TensorProto.Types.DataType.Int8, zero.DataType);
            Assert.Empty(zero.Dims);
            Assert.Equal([(byte)0], zero.RawData.ToByteArray());

            // DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q, x_zp, W_zp) -> Cast(float) -> Mul(x_scale * W_scale).
            NodeProto matMulInteger = Assert.Single(graph.Node, n => n.OpType == "MatMulInteger" && n.Input[1] == q.Name);
            Assert.Equal(zero.Name, matMulInteger.Input[3]);
            NodeProto dql = producers[matMulInteger.Input[0]];
            Assert.Equal("DynamicQuantizeLinear", dql.OpType);
            Assert.Equal(dql.Output[2], matMulInteger.Input[2]);
            NodeProto cast = Assert.Single(graph.Node, n => n.Input.Contains(matMulInteger.Output[0]));
            Assert.Equal("Cast", cast.OpType);
            Assert.Equal((long)TensorProto.Types.DataType.Float, Assert.Single(cast.Attribute).I);
            NodeProto mul = Assert.Single(graph.Node, n => n.Input.Contains(cast.Output[0]));
            Assert.Equal("Mul", mul.OpType);
            NodeProto scales = producers[mul.Input[1]];
            Assert.Equal("Mul", scales.OpType);
            Assert.Equal([dql.Output[1], scale.Name], scales.Input);
        }

        Assert.Equal((int)TensorProto.Types.DataType.Float, inits["transformer.wte.weight"].DataType);
        Assert.Equal("transformer.wte.weight", Assert.Single(graph.Node, n => n.Name == "/transformer/wte/Gather").Input[0]);
    }

    [Fact]
    public void Synthesize_TinyInt8QuantizeLmHead_LmHeadIsQuantizedWteTransposed()
    {
        GraphProto graph = Parse(TestModels.TinyInt8LmHead).Graph;
        Dictionary<string, TensorProto> inits = graph.Initializer.ToDictionary(t => t.Name);

        TensorProto q = inits["lm_head.weight_quantized"];
        Assert.Equal([E, V], q.Dims);
        Assert.Equal((int)TensorProto.Types.DataType.Int8, q.DataType);
        Assert.False(inits.ContainsKey("lm_head.weight"));
        Assert.DoesNotContain(graph.Node, n => n.OpType == "Transpose" && n.Input[0] == "transformer.wte.weight");
        NodeProto head = Assert.Single(graph.Node, n => n.Output.Contains("logits"));
        Assert.Equal("Mul", head.OpType);

        // lm_head[k, v] ≈ wte[v, k] within half a quantization step.
        float scale = Floats(inits["lm_head.weight_scale"])[0];
        ReadOnlySpan<float> wte = Floats(inits["transformer.wte.weight"]);
        ReadOnlySpan<sbyte> values = MemoryMarshal.Cast<byte, sbyte>(q.RawData.Span);
        for (int v = 0; v < V; v += 997)
        {
            for (int k = 0; k < E; k++)
            {
                Assert.True(Math.Abs((values[(k * V) + v] * scale) - wte[(v * E) + k]) <= (scale / 2) + 1e-7, $"lm_head[{k}, {v}]");
            }
        }
    }

    [Fact]
    public void Synthesize_Int8AndFp32SameSeed_QuantizedWeightsDequantizeToFp32Weights()
    {
        Dictionary<string, TensorProto> fp32 = Parse(TestModels.TinyFp32).Graph.Initializer.ToDictionary(t => t.Name);
        Dictionary<string, TensorProto> int8 = Parse(TestModels.TinyInt8).Graph.Initializer.ToDictionary(t => t.Name);

        foreach (string name in LinearWeights)
        {
            ReadOnlySpan<float> w = Floats(fp32[name]);
            ReadOnlySpan<sbyte> q = MemoryMarshal.Cast<byte, sbyte>(int8[$"{name}_quantized"].RawData.Span);
            float scale = Floats(int8[$"{name}_scale"])[0];
            float absMax = 0f;
            for (int i = 0; i < w.Length; i++)
            {
                absMax = Math.Max(absMax, Math.Abs(w[i]));
                Assert.True(Math.Abs((q[i] * scale) - w[i]) <= (scale / 2) + 1e-7, $"{name}[{i}]");
                Assert.NotEqual(sbyte.MinValue, q[i]);
            }

            Assert.Equal(absMax / 127.0, scale, 1e-9);
        }

        // Everything that stays FP32 is bit-identical between the two files.
        foreach (string name in new[] { "transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.mlp.c_fc.bias" })
        {
            Assert.True(fp32[name].RawData.Span.SequenceEqual(int8[name].RawData.Span), name);
        }
    }

    [Fact]
    public void Synthesize_Tiny_ConfigMetadataIsGpt2Config()
    {
        ModelProto model = Parse(TestModels.TinyFp32);
        Dictionary<string, string> meta = model.MetadataProps.ToDictionary(p => p.Key, p => p.Value);

        using JsonDocument config = JsonDocument.Parse(meta["config"]);
        JsonElement c = config.RootElement;
        Assert.Equal("gpt2", c.GetProperty("model_type").GetString());
        Assert.Equal(V, c.GetProperty("vocab_size").GetInt32());
        Assert.Equal(1024, c.GetProperty("n_positions").GetInt32());
        Assert.Equal(E, c.GetProperty("n_embd").GetInt32());
        Assert.Equal(2, c.GetProperty("n_layer").GetInt32());
        Assert.Equal(2, c.GetProperty("n_head").GetInt32());
        Assert.Equal(JsonValueKind.Null, c.GetProperty("n_inner").ValueKind);
        Assert.Equal("gelu_new", c.GetProperty("activation_function").GetString());
        Assert.Equal(1e-5, c.GetProperty("layer_norm_epsilon").GetDouble());
        Assert.Equal(50256, c.GetProperty("bos_token_id").GetInt32());
        Assert.Equal(50256, c.GetProperty("eos_token_id").GetInt32());
        Assert.Equal("GPT2LMHeadModel", Assert.Single(c.GetProperty("architectures").EnumerateArray()).GetString());

        using JsonDocument synthesis = JsonDocument.Parse(meta[ModelSynthesizer.SynthesisMetadataKey]);
        JsonElement s = synthesis.RootElement;
        Assert.True(s.GetProperty("synthesized").GetBoolean());
        Assert.Equal("tiny", s.GetProperty("preset").GetString());
        Assert.Equal("fp32", s.GetProperty("precision").GetString());
        Assert.False(s.GetProperty("quantize_lm_head").GetBoolean());
        Assert.Equal("optimum", s.GetProperty("layout").GetString());
        Assert.Equal("42", s.GetProperty("seed").GetString());
    }

    [Fact]
    public void Synthesize_TinyInt8QuantizeLmHead_SynthesisMetadataNamesPrecisionAndLmHead()
    {
        string json = Parse(TestModels.TinyInt8LmHead).MetadataProps.Single(p => p.Key == ModelSynthesizer.SynthesisMetadataKey).Value;

        using JsonDocument synthesis = JsonDocument.Parse(json);
        Assert.Equal("int8", synthesis.RootElement.GetProperty("precision").GetString());
        Assert.True(synthesis.RootElement.GetProperty("quantize_lm_head").GetBoolean());
    }

    [Fact]
    public void Synthesize_Fp32WithQuantizeLmHead_ThrowsNamingTheRule()
    {
        var options = new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Fp32, QuantizeLmHead: true, Seed: 1);

        ArgumentException error = Assert.Throws<ArgumentException>(() => ModelSynthesizer.Synthesize(options));
        Assert.Contains("QuantizeLmHead requires Precision Int8", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Synthesize_UndefinedPreset_ThrowsArgumentException()
    {
        var options = new SynthesisOptions((ModelPreset)7, ModelPrecision.Fp32, QuantizeLmHead: false, Seed: 1);

        ArgumentException error = Assert.Throws<ArgumentException>(() => ModelSynthesizer.Synthesize(options));
        Assert.Contains("Preset", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WriteFile_NewPathInMissingDirectory_WritesSynthesizeBytes()
    {
        using var directory = new TemporaryDirectory();
        string path = Path.Combine(directory.Path, "models", "tiny.onnx");

        ModelSynthesizer.WriteFile(TestModels.TinyInt8, path);

        Assert.Equal(TestModels.Get(TestModels.TinyInt8), File.ReadAllBytes(path));
    }

    [Fact]
    public void WriteFile_ExistingFile_ReplacedWithoutLeavingTemporaryFiles()
    {
        using var directory = new TemporaryDirectory();
        string path = directory.File("model.onnx");
        File.WriteAllText(path, "old contents");

        ModelSynthesizer.WriteFile(TestModels.TinyFp32, path);

        Assert.Equal(TestModels.Get(TestModels.TinyFp32), File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(directory.Path));
    }

    private static ModelProto Parse(SynthesisOptions options) => ModelProto.Parser.ParseFrom(TestModels.Get(options));

    private static ReadOnlySpan<float> Floats(TensorProto tensor) => MemoryMarshal.Cast<byte, float>(tensor.RawData.Span);
}
