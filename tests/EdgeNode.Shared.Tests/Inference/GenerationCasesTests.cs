using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Shared.Tests.Inference;

/// <summary>Generation cases 2, 3, 4 and 5 (shared/cases/generation.md) against real ORT sessions on tiny models.</summary>
[Collection(OnnxCollectionDefinition.Name)]
public sealed class GenerationCasesTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private const string Prompt = "Hello, my name is";

    private static readonly InferenceSettings Settings = new() { IntraOpThreads = 1 };

    private static readonly GenerationParameters Greedy = new() { Greedy = true, MaxNewTokens = 20 };

    [Theory]
    [InlineData(ModelLayout.NoPositionIds, ModelVariant.NoPositionIds)]
    [InlineData(ModelLayout.Merged, ModelVariant.MergedLegacy)]
    public void Generate_VariantFromSameWeights_GivesTheOptimumGreedyTokensAndLogits(ModelLayout layout, ModelVariant variant)
    {
        string path = fixture.PathFor($"variant-{layout}.onnx");
        ModelSynthesizer.WriteFile(TinyModelFixture.Options with { Layout = layout }, path);
        using var model = Gpt2Model.Load(path, Settings);
        var reference = new Gpt2Generator(fixture.Model, Gpt2Tokenizer.Shared);
        var referenceLogits = new List<float[]>();
        reference.LogitsObserver = (_, logits) => referenceLogits.Add(logits.ToArray());
        var generator = new Gpt2Generator(model, Gpt2Tokenizer.Shared);
        var logits = new List<float[]>();
        generator.LogitsObserver = (_, l) => logits.Add(l.ToArray());

        var expected = reference.Generate(Prompt, Greedy);
        var actual = generator.Generate(Prompt, Greedy);

        Assert.Equal(variant, model.Info.Variant);
        Assert.Equal(2, model.Info.NLayer);
        Assert.Equal(2, model.Info.NHead);
        Assert.Equal(32, model.Info.HeadDim);
        Assert.Equal(50257, model.Info.VocabSize);
        Assert.True(actual.Succeeded, actual.Error?.Message);
        Assert.Equal(expected.Result!.GeneratedTokens, actual.Result.GeneratedTokens);
        Assert.Equal(20, actual.Result.GeneratedTokens.Count);
        for (int step = 0; step < logits.Count; step++)
        {
            Assert.True(MaxAbsDiff(referenceLogits[step], logits[step]) <= 1e-4f, $"step {step}");
        }
    }

    [Fact]
    public void Generate_MergedDecoder_UsesThePastAfterThePrefill()
    {
        // With use_cache_branch fed true, the decode step must see the past: its logits equal a full recompute.
        string path = fixture.PathFor("merged-past.onnx");
        ModelSynthesizer.WriteFile(TinyModelFixture.Options with { Layout = ModelLayout.Merged }, path);
        using var model = Gpt2Model.Load(path, Settings);
        var generator = new Gpt2Generator(model, Gpt2Tokenizer.Shared);
        var logits = new List<float[]>();
        generator.LogitsObserver = (_, l) => logits.Add(l.ToArray());

        var result = generator.Generate(Prompt, Greedy with { MaxNewTokens = 3 }).Result!;

        var context = result.PromptTokens.Concat(result.GeneratedTokens.Take(2)).ToList();
        Assert.True(MaxAbsDiff(fixture.Model.ComputeLastLogits([context])[0], logits[2]) <= 1e-4f);
    }

    [Fact]
    public void GenerateBatch_LeftPaddedPrompts_EachRowMatchesItsPromptAloneAtEveryStep()
    {
        // Generation case 2 through the public batch API.
        string[] prompts = ["Hi there", "The quick brown fox jumps over the lazy dog", ""];
        var generator = new Gpt2Generator(fixture.Model, Gpt2Tokenizer.Shared);
        var batchLogits = new Dictionary<(int Row, int Step), float[]>();
        generator.BatchLogitsObserver = (row, step, logits) => batchLogits[(row, step)] = logits.ToArray();

        var outcomes = generator.GenerateBatch(prompts, Greedy with { MaxNewTokens = 8 });

        Assert.Equal(3, outcomes.Count);
        for (int row = 0; row < prompts.Length; row++)
        {
            var alone = new Gpt2Generator(fixture.Model, Gpt2Tokenizer.Shared);
            var aloneLogits = new List<float[]>();
            alone.LogitsObserver = (_, l) => aloneLogits.Add(l.ToArray());
            var expected = alone.Generate(prompts[row], Greedy with { MaxNewTokens = 8 });

            Assert.True(outcomes[row].Succeeded, outcomes[row].Error?.Message);
            Assert.Equal(expected.Result!.GeneratedTokens, outcomes[row].Result!.GeneratedTokens);
            Assert.Equal(expected.Result.Text, outcomes[row].Result!.Text);
            for (int step = 0; step < aloneLogits.Count; step++)
            {
                float diff = MaxAbsDiff(aloneLogits[step], batchLogits[(row, step)]);
                Assert.True(diff <= 1e-4f, $"row {row} step {step}: {diff}");
            }
        }
    }

    [Fact]
    public void GenerateBatch_SeededSampling_EachRowEqualsItsSoloGeneration()
    {
        string[] prompts = ["Once upon a time", "A"];
        var parameters = new GenerationParameters { MaxNewTokens = 12, Seed = 7, Temperature = 1f, TopK = 0, TopP = 1f };
        var generator = new Gpt2Generator(fixture.Model, Gpt2Tokenizer.Shared);

        var outcomes = generator.GenerateBatch(prompts, parameters);

        for (int row = 0; row < prompts.Length; row++)
        {
            Assert.Equal(generator.Generate(prompts[row], parameters).Result!.Text, outcomes[row].Result!.Text);
        }
    }

    [Fact]
    public void GenerateBatch_OneRowTooLong_FailsOnlyThatRow()
    {
        string longPrompt = string.Concat(Enumerable.Repeat(" hello", 1020));
        var generator = new Gpt2Generator(fixture.Model, Gpt2Tokenizer.Shared);

        var outcomes = generator.GenerateBatch([Prompt, longPrompt], Greedy with { MaxNewTokens = 8 });

        Assert.True(outcomes[0].Succeeded);
        Assert.Equal(GenerationError.PromptTooLong, outcomes[1].Error!.Code);
    }

    [Fact]
    public void GenerateBatch_CanceledFromObserver_StopsWithinOneStep()
    {
        var generator = new Gpt2Generator(fixture.Model, Gpt2Tokenizer.Shared);
        using var cts = new CancellationTokenSource();
        generator.BatchLogitsObserver = (row, step, _) =>
        {
            if (step == 2 && row == 1)
            {
                cts.Cancel();
            }
        };

        var outcomes = generator.GenerateBatch(["a b", "c d e"], Greedy with { MaxNewTokens = 500 }, cts.Token);

        Assert.All(outcomes, o => Assert.Equal(GenerationError.Canceled, o.Error!.Code));
        Assert.Equal(3, generator.RunCount); // prefill + 2 decode steps
    }

    [Fact]
    public void Generate_ForcedEmojiAndCjkContinuation_StreamsWholeCharactersThatConcatenateToTheText()
    {
        // Generation case 5 end to end: the model is edited to emit the byte-level tokens of "é😀漢 ok".
        const string forced = "é😀漢 ok";
        var tokens = Gpt2Tokenizer.Shared.Encode(forced);
        var prompt = Gpt2Tokenizer.Shared.Encode(Prompt);
        Assert.True(tokens.Count > 5, "the characters must be split across byte-level tokens");
        string path = fixture.PathFor("forced-emoji.onnx");
        File.WriteAllBytes(path, ModelSurgery.ForceTokensFrom(File.ReadAllBytes(fixture.ModelPath), prompt.Count, tokens, 50257));
        using var model = Gpt2Model.Load(path, Settings);
        var pieces = new List<string>();

        var outcome = new Gpt2Generator(model, Gpt2Tokenizer.Shared).Generate(
            Prompt, Greedy with { MaxNewTokens = tokens.Count, OnToken = t => pieces.Add(t.Text) });

        Assert.True(outcome.Succeeded, outcome.Error?.Message);
        Assert.Equal(tokens, outcome.Result.GeneratedTokens);
        Assert.Equal(forced, outcome.Result.Text);
        Assert.Equal(tokens.Count, pieces.Count);
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.Contains(string.Empty, pieces); // some token only carried part of a character
        Assert.Equal(outcome.Result.Text, string.Concat(pieces));
    }

    [Fact]
    public void Generate_CanceledAfterTheCheckBeforeARun_RunOptionsTerminateAbortsThatRun()
    {
        // Generation case 4: a cancel that lands while a step is already committed (past the token check) must
        // still stop it: RunOptions.Terminate makes that Run fail at once, so it never completes.
        var generator = new Gpt2Generator(fixture.Model, Gpt2Tokenizer.Shared);
        using var cts = new CancellationTokenSource();
        int tokens = 0;
        generator.BeforeRun = runsDone =>
        {
            if (runsDone == 3)
            {
                cts.Cancel();
            }
        };

        var outcome = generator.Generate(Prompt, Greedy with { MaxNewTokens = 900, OnToken = _ => tokens++ }, cts.Token);

        Assert.Equal(GenerationError.Canceled, outcome.Error!.Code);
        Assert.Equal(3, tokens); // prefill + 2 decode steps gave 3 tokens; the 4th Run was terminated
        Assert.Equal(3, generator.RunCount);
    }

    private static float MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }

        return max;
    }
}
