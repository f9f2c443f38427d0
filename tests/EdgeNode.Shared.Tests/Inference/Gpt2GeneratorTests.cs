using System.Text;
using EdgeNode.Shared.Inference;

namespace EdgeNode.Shared.Tests.Inference;

[Collection(OnnxCollectionDefinition.Name)]
public sealed class Gpt2GeneratorTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private const string Prompt = "Hello, my name is";

    private static readonly GenerationParameters Greedy = new() { Greedy = true, MaxNewTokens = 24 };

    private Gpt2Generator NewGenerator() => new(fixture.Model, Gpt2Tokenizer.Shared);

    [Fact]
    public void Generate_Fp32CachedDecode_MatchesFullRecomputeAtEveryStep()
    {
        var generator = NewGenerator();
        var stepLogits = new List<float[]>();
        generator.LogitsObserver = (_, logits) => stepLogits.Add(logits.ToArray());

        var outcome = generator.Generate(Prompt, Greedy);

        Assert.True(outcome.Succeeded, outcome.Error?.Message);
        var result = outcome.Result;
        Assert.Equal(24, result.GeneratedTokens.Count);
        Assert.Equal(24, stepLogits.Count);
        var context = result.PromptTokens.ToList();
        for (int step = 0; step < stepLogits.Count; step++)
        {
            // Full recompute: the whole sequence so far from an empty past.
            float[] recomputed = fixture.Model.ComputeLastLogits([context])[0];
            float maxDiff = 0;
            for (int i = 0; i < recomputed.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(recomputed[i] - stepLogits[step][i]));
            }

            Assert.True(maxDiff <= 1e-4f, $"step {step}: cached vs recomputed logits differ by {maxDiff}");
            Assert.Equal(ArgMax(recomputed), result.GeneratedTokens[step]);
            context.Add(result.GeneratedTokens[step]);
        }
    }

    [Fact]
    public void ComputeLastLogits_LeftPaddedBatch_MatchesEachPromptAlone()
    {
        // Generation case 2: rows of different lengths, left-padded, position ids from the mask.
        IReadOnlyList<int> shortPrompt = Gpt2Tokenizer.Shared.Encode("Hi there");
        IReadOnlyList<int> longPrompt = Gpt2Tokenizer.Shared.Encode("The quick brown fox jumps over the lazy dog");
        Assert.True(longPrompt.Count > shortPrompt.Count + 3);

        float[][] batch = fixture.Model.ComputeLastLogits([shortPrompt, longPrompt]);
        float[] shortAlone = fixture.Model.ComputeLastLogits([shortPrompt])[0];
        float[] longAlone = fixture.Model.ComputeLastLogits([longPrompt])[0];

        Assert.True(MaxAbsDiff(batch[0], shortAlone) <= 1e-4f, $"padded row differs by {MaxAbsDiff(batch[0], shortAlone)}");
        Assert.True(MaxAbsDiff(batch[1], longAlone) <= 1e-4f, $"unpadded row differs by {MaxAbsDiff(batch[1], longAlone)}");
    }

    [Fact]
    public void Generate_SameSeed_SameText()
    {
        var generator = NewGenerator();
        var parameters = new GenerationParameters { MaxNewTokens = 16, Seed = 1234 };

        var first = generator.Generate(Prompt, parameters);
        var second = generator.Generate(Prompt, parameters);

        Assert.True(first.Succeeded && second.Succeeded);
        Assert.Equal(first.Result.GeneratedTokens, second.Result.GeneratedTokens);
        Assert.Equal(first.Result.Text, second.Result.Text);
    }

    [Fact]
    public void Generate_DifferentSeeds_DoNotAllGiveTheSameText()
    {
        var generator = NewGenerator();

        var texts = new[] { 1L, 2L, 3L, 4L, 5L }
            .Select(seed => generator.Generate(Prompt, new GenerationParameters { MaxNewTokens = 16, Seed = seed, Temperature = 1f }))
            .Select(outcome => outcome.Result!.Text)
            .ToList();

        Assert.True(texts.Distinct().Count() > 1, "five seeds gave the same text");
    }

    [Fact]
    public void Generate_SeedLongerThan32Bits_IsReproducible()
    {
        var generator = NewGenerator();
        var parameters = new GenerationParameters { MaxNewTokens = 8, Seed = long.MaxValue - 7 };

        Assert.Equal(generator.Generate(Prompt, parameters).Result!.GeneratedTokens, generator.Generate(Prompt, parameters).Result!.GeneratedTokens);
    }

    [Fact]
    public void Generate_MaxNewTokensReached_FinishesWithLengthAndExactCount()
    {
        var outcome = NewGenerator().Generate(Prompt, Greedy with { MaxNewTokens = 5 });

        Assert.True(outcome.Succeeded);
        Assert.Equal(FinishReason.Length, outcome.Result.FinishReason);
        Assert.Equal(5, outcome.Result.GeneratedTokens.Count);
        Assert.Equal(Gpt2Tokenizer.Shared.Encode(Prompt), outcome.Result.PromptTokens);
        Assert.Equal(Gpt2Tokenizer.Shared.Decode(outcome.Result.GeneratedTokens), outcome.Result.Text);
    }

    [Fact]
    public void Generate_Timings_ArePositiveAndRatesDerived()
    {
        var result = NewGenerator().Generate(Prompt, Greedy with { MaxNewTokens = 4 }).Result!;

        Assert.True(result.PrefillMs > 0);
        Assert.True(result.DecodeMs > 0);
        Assert.Equal(result.PromptTokens.Count * 1000.0 / result.PrefillMs, result.PrefillTokensPerSecond, 6);
        Assert.Equal(3 * 1000.0 / result.DecodeMs, result.DecodeTokensPerSecond, 6);
    }

    [Fact]
    public void Generate_StopSequenceInContinuation_CutsTextBeforeItAndFinishesWithStop()
    {
        var generator = NewGenerator();
        string full = generator.Generate(Prompt, Greedy).Result!.Text;
        string stop = PickStop(full);
        int cut = full.IndexOf(stop, StringComparison.Ordinal);

        var outcome = generator.Generate(Prompt, Greedy with { Stop = ["never appears \u0001", stop] });

        Assert.True(outcome.Succeeded);
        Assert.Equal(FinishReason.Stop, outcome.Result.FinishReason);
        Assert.Equal(full[..cut], outcome.Result.Text);
        // It stopped at the token that completed the stop sequence, not later.
        string decoded = Gpt2Tokenizer.Shared.Decode(outcome.Result.GeneratedTokens);
        Assert.Contains(stop, decoded, StringComparison.Ordinal);
        Assert.DoesNotContain(stop, Gpt2Tokenizer.Shared.Decode(outcome.Result.GeneratedTokens.Take(outcome.Result.GeneratedTokens.Count - 1)), StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_StreamingWithStop_TokenTextsConcatenateToTheCutText()
    {
        var generator = NewGenerator();
        string full = generator.Generate(Prompt, Greedy).Result!.Text;
        string stop = PickStop(full);
        var streamed = new StringBuilder();
        var events = new List<GeneratedToken>();

        var outcome = generator.Generate(Prompt, Greedy with
        {
            Stop = [stop],
            OnToken = token =>
            {
                events.Add(token);
                streamed.Append(token.Text);
            },
        });

        Assert.Equal(FinishReason.Stop, outcome.Result!.FinishReason);
        Assert.Equal(outcome.Result.Text, streamed.ToString());
        Assert.Equal(outcome.Result.GeneratedTokens, events.Select(e => e.TokenId));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.Index));
        Assert.True(events[^1].IsLast);
        Assert.All(events.SkipLast(1), e => Assert.False(e.IsLast));
    }

    [Fact]
    public void Generate_StreamingSampledText_TokenTextsConcatenateToTheFinalText()
    {
        // Generation case 5 end to end (the split-character rule itself is pinned down with real
        // emoji/CJK tokens in GeneratedTextTests): whatever is sampled, the streamed pieces are
        // exactly the final text, so no piece carries a U+FFFD the final text lacks.
        var generator = NewGenerator();
        for (long seed = 1; seed <= 4; seed++)
        {
            var pieces = new List<string>();
            var outcome = generator.Generate(Prompt, new GenerationParameters
            {
                MaxNewTokens = 32,
                Seed = seed,
                Temperature = 1f,
                TopK = 0,
                TopP = 1f,
                OnToken = token => pieces.Add(token.Text),
            });

            Assert.Equal(outcome.Result!.GeneratedTokens.Count, pieces.Count);
            Assert.Equal(outcome.Result.Text, string.Concat(pieces));
        }
    }

    [Fact]
    public void Generate_EndOfTextToken_FinishesWithEosAndLeavesItOutOfTheText()
    {
        var prompt = Gpt2Tokenizer.Shared.Encode(Prompt);
        string path = fixture.PathFor("eos-after-prompt.onnx");
        File.WriteAllBytes(path, ModelSurgery.ForceEndOfTextFrom(
            File.ReadAllBytes(fixture.ModelPath), fromPosition: prompt.Count, Gpt2Tokenizer.EndOfText, 50257));
        using var model = Gpt2Model.Load(path, new InferenceSettings { IntraOpThreads = 1 });

        var outcome = new Gpt2Generator(model, Gpt2Tokenizer.Shared).Generate(Prompt, Greedy with { MaxNewTokens = 10 });

        Assert.True(outcome.Succeeded);
        var result = outcome.Result;
        Assert.Equal(FinishReason.Eos, result.FinishReason);
        Assert.Equal(2, result.GeneratedTokens.Count);
        Assert.NotEqual(Gpt2Tokenizer.EndOfText, result.GeneratedTokens[0]);
        Assert.Equal(Gpt2Tokenizer.EndOfText, result.GeneratedTokens[1]);
        Assert.Equal(Gpt2Tokenizer.Shared.Decode([result.GeneratedTokens[0]]), result.Text);
        Assert.DoesNotContain("<|endoftext|>", result.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_PromptOf1100Tokens_ReturnsPromptTooLong()
    {
        string prompt = string.Concat(Enumerable.Repeat("hello ", 1100));
        int tokens = Gpt2Tokenizer.Shared.CountTokens(prompt);

        var outcome = NewGenerator().Generate(prompt, Greedy with { MaxNewTokens = 1 });

        Assert.False(outcome.Succeeded);
        Assert.Equal(GenerationError.PromptTooLong, outcome.Error.Code);
        Assert.Contains($"prompt of {tokens} tokens", outcome.Error.Message, StringComparison.Ordinal);
        Assert.Contains("1024", outcome.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_Prompt1000TokensPlus100New_ReturnsPromptTooLong()
    {
        string prompt = "hello" + string.Concat(Enumerable.Repeat(" hello", 999));
        Assert.Equal(1000, Gpt2Tokenizer.Shared.CountTokens(prompt));
        var generator = NewGenerator();

        var outcome = generator.Generate(prompt, Greedy with { MaxNewTokens = 100 });

        Assert.Equal(GenerationError.PromptTooLong, outcome.Error!.Code);
        Assert.Equal(
            "prompt of 1000 tokens + max_new_tokens 100 = 1100 tokens exceeds the model's context of 1024 tokens (n_positions)",
            outcome.Error.Message);
        Assert.Equal(0, generator.RunCount);
    }

    [Fact]
    public void Generate_Prompt1000TokensPlus24New_FillsTheContextExactly()
    {
        string prompt = "hello" + string.Concat(Enumerable.Repeat(" hello", 999));

        var outcome = NewGenerator().Generate(prompt, Greedy with { MaxNewTokens = 24 });

        Assert.True(outcome.Succeeded, outcome.Error?.Message);
        Assert.Equal(24, outcome.Result.GeneratedTokens.Count);
    }

    [Fact]
    public void CheckFits_AtTheLimit_FitsAndOneMoreDoesNot()
    {
        var generator = NewGenerator();

        Assert.Null(generator.CheckFits(1000, 24));
        Assert.Equal(GenerationError.PromptTooLong, generator.CheckFits(1000, 25)!.Code);
    }

    [Fact]
    public void Generate_CanceledAfterThirdToken_StopsBeforeTheNextStep()
    {
        var generator = NewGenerator();
        using var cts = new CancellationTokenSource();
        int tokens = 0;

        var outcome = generator.Generate(Prompt, Greedy with
        {
            MaxNewTokens = 1000 - Gpt2Tokenizer.Shared.CountTokens(Prompt),
            OnToken = token =>
            {
                tokens++;
                if (token.Index == 2)
                {
                    cts.Cancel();
                }
            },
        }, cts.Token);

        Assert.False(outcome.Succeeded);
        Assert.Equal(GenerationError.Canceled, outcome.Error.Code);
        Assert.Equal(3, tokens);
        Assert.Equal(3, generator.RunCount); // prefill + 2 decode steps: no step after the cancel
    }

    [Fact]
    public void Generate_AlreadyCanceled_RunsNothing()
    {
        var generator = NewGenerator();

        var outcome = generator.Generate(Prompt, Greedy, new CancellationToken(canceled: true));

        Assert.Equal(GenerationError.Canceled, outcome.Error!.Code);
        Assert.Equal(0, generator.RunCount);
    }

    [Fact]
    public void Generate_EmptyPrompt_StartsFromEndOfText()
    {
        var outcome = NewGenerator().Generate(string.Empty, Greedy with { MaxNewTokens = 3 });

        Assert.True(outcome.Succeeded);
        Assert.Empty(outcome.Result.PromptTokens);
        Assert.Equal(3, outcome.Result.GeneratedTokens.Count);
    }

    [Fact]
    public void Generate_InvalidParameter_ThrowsNamingTheField()
    {
        var ex = Assert.Throws<ArgumentException>(() => NewGenerator().Generate(Prompt, new GenerationParameters { TopP = 1.5f }));

        Assert.Contains("top_p", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>A 3-character stop string from the middle of the text, free of U+FFFD, found at its first occurrence.</summary>
    private static string PickStop(string text)
    {
        for (int start = Math.Max(1, text.Length / 3); start + 3 <= text.Length; start++)
        {
            string candidate = text.Substring(start, 3);
            if (!candidate.Contains('\uFFFD', StringComparison.Ordinal) && !char.IsSurrogate(candidate[0]) && !char.IsSurrogate(candidate[^1]))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException($"no usable stop string in '{text}'");
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
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
