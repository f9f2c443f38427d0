using EdgeNode.Shared.Inference;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeNode.Shared.Tests.Inference;

public sealed class Gpt2SignatureTests
{
    private const int Dynamic = -1;

    [Fact]
    public void Validate_OptimumSignature_ReadsShape()
    {
        var problems = new List<string>();

        var shape = Gpt2Signature.Validate(Inputs(layers: 3), Outputs(layers: 3), problems);

        Assert.Empty(problems);
        Assert.Equal(new Gpt2Shape(3, 12, 64, 50257), shape);
    }

    [Fact]
    public void Validate_MissingAttentionMask_NamesIt()
    {
        var problems = new List<string>();

        var shape = Gpt2Signature.Validate(Inputs(2).Where(i => i.Name != "attention_mask").ToList(), Outputs(2), problems);

        Assert.Null(shape);
        Assert.Equal(["model input 'attention_mask' is missing"], problems);
    }

    [Fact]
    public void Validate_MissingPresentValue_NamesIt()
    {
        var problems = new List<string>();

        Gpt2Signature.Validate(Inputs(2), Outputs(2).Where(o => o.Name != "present.1.value").ToList(), problems);

        Assert.Equal(["model output 'present.1.value' is missing"], problems);
    }

    [Fact]
    public void Validate_NoPastInputs_SaysTheKvCacheIsMissing()
    {
        var problems = new List<string>();

        Gpt2Signature.Validate(Inputs(0), Outputs(0), problems);

        Assert.Contains(problems, p => p.StartsWith("model input 'past_key_values.0.key' is missing", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_WrongTypeAndFixedSequence_NamesFieldAndRule()
    {
        var inputs = Inputs(1).Select(i => i.Name switch
        {
            "input_ids" => i with { ElementType = TensorElementType.Int32 },
            "attention_mask" => i with { Dims = [1, 8] },
            _ => i,
        }).ToList();
        var problems = new List<string>();

        Gpt2Signature.Validate(inputs, Outputs(1), problems);

        Assert.Equal(
            [
                "model input 'input_ids' must be int64, but it is int32",
                "model input 'attention_mask' dim 1 (sequence length) must be dynamic, but it is fixed at 8",
            ],
            problems);
    }

    [Fact]
    public void Validate_OtherVocabulary_IsRefused()
    {
        var outputs = Outputs(1).Select(o => o.Name == "logits" ? o with { Dims = [Dynamic, Dynamic, 50304] } : o).ToList();
        var problems = new List<string>();

        Gpt2Signature.Validate(Inputs(1), outputs, problems);

        Assert.Equal(["model output 'logits' has vocab 50304, but the GPT-2 tokenizer has 50257 tokens"], problems);
    }

    [Fact]
    public void Validate_InconsistentHeads_NamesTheTensor()
    {
        var inputs = Inputs(2).Select(i => i.Name == "past_key_values.1.value" ? i with { Dims = [Dynamic, 6, Dynamic, 64] } : i).ToList();
        var problems = new List<string>();

        Gpt2Signature.Validate(inputs, Outputs(2), problems);

        Assert.Equal(["model input 'past_key_values.1.value' has n_head 6, but other KV tensors have 12"], problems);
    }

    [Fact]
    public void Validate_LegacyMergedDecoder_IsDetectedAsMerged()
    {
        var inputs = Inputs(1).Where(i => i.Name != "position_ids")
            .Append(new TensorSignature("use_cache_branch", TensorElementType.Bool, [1]))
            .ToList();
        var problems = new List<string>();

        var shape = Gpt2Signature.Validate(inputs, Outputs(1), problems);

        Assert.Empty(problems);
        Assert.Equal(ModelVariant.MergedLegacy, shape!.Variant);
    }

    [Fact]
    public void Validate_UseCacheBranchNotBool_NamesTheInputAndType()
    {
        var inputs = Inputs(1).Append(new TensorSignature("use_cache_branch", TensorElementType.Int64, [1])).ToList();
        var problems = new List<string>();

        Assert.Null(Gpt2Signature.Validate(inputs, Outputs(1), problems));

        Assert.Equal(["model input 'use_cache_branch' must be bool, but it is int64"], problems);
    }

    [Fact]
    public void Validate_NoPositionIds_IsDetectedAsNoPositionIdsVariant()
    {
        var problems = new List<string>();

        var shape = Gpt2Signature.Validate(Inputs(2).Where(i => i.Name != "position_ids").ToList(), Outputs(2), problems);

        Assert.Empty(problems);
        Assert.Equal(ModelVariant.NoPositionIds, shape!.Variant);
        Assert.Equal(2, shape.NLayer);
    }

    [Theory]
    [InlineData("""{"n_positions": 2048, "n_embd": 768}""", 2048, 768)]
    [InlineData("""{"n_ctx": 512}""", 512, null)]
    [InlineData("""not json""", null, null)]
    [InlineData("""[1, 2]""", null, null)]
    public void ReadConfig_GivesPositionsAndWidth(string json, int? nPositions, int? nEmbd)
    {
        var (positions, embd) = Gpt2Signature.ReadConfig(new Dictionary<string, string> { ["config"] = json });

        Assert.Equal(nPositions, positions);
        Assert.Equal(nEmbd, embd);
    }

    private static List<TensorSignature> Inputs(int layers)
    {
        var inputs = new List<TensorSignature>
        {
            new("input_ids", TensorElementType.Int64, [Dynamic, Dynamic]),
            new("attention_mask", TensorElementType.Int64, [Dynamic, Dynamic]),
            new("position_ids", TensorElementType.Int64, [Dynamic, Dynamic]),
        };
        for (int i = 0; i < layers; i++)
        {
            inputs.Add(new($"past_key_values.{i}.key", TensorElementType.Float, [Dynamic, 12, Dynamic, 64]));
            inputs.Add(new($"past_key_values.{i}.value", TensorElementType.Float, [Dynamic, 12, Dynamic, 64]));
        }

        return inputs;
    }

    private static List<TensorSignature> Outputs(int layers)
    {
        var outputs = new List<TensorSignature> { new("logits", TensorElementType.Float, [Dynamic, Dynamic, 50257]) };
        for (int i = 0; i < layers; i++)
        {
            outputs.Add(new($"present.{i}.key", TensorElementType.Float, [Dynamic, 12, Dynamic, 64]));
            outputs.Add(new($"present.{i}.value", TensorElementType.Float, [Dynamic, 12, Dynamic, 64]));
        }

        return outputs;
    }
}
