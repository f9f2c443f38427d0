using EdgeNode.Shared.Inference;

namespace EdgeNode.Shared.Tests.Inference;

public sealed class LogitsSamplerTests
{
    [Fact]
    public void Next_Greedy_PicksArgMaxAndLowestIdOnTies()
    {
        var sampler = Sampler(4, new GenerationParameters { Greedy = true }, []);

        Assert.Equal(2, sampler.Next([0f, 1f, 3f, -1f]));
        Assert.Equal(1, sampler.Next([0f, 3f, 3f, -1f]));
    }

    [Fact]
    public void Next_TemperatureZero_IsGreedy()
    {
        var sampler = Sampler(4, new GenerationParameters { Temperature = 0f }, []);

        Assert.Equal(3, sampler.Next([0f, 1f, 2f, 2.5f]));
    }

    [Fact]
    public void Next_RepetitionPenalty_DividesPositiveAndMultipliesNegativeLogitsOfSeenTokens()
    {
        // Seen 0 and 1, penalty 2: [2, -2, 1.5] -> [1, -4, 1.5].
        var sampler = Sampler(3, new GenerationParameters { Greedy = true, RepetitionPenalty = 2f }, [0, 1]);
        var unpenalized = Sampler(3, new GenerationParameters { Greedy = true }, [0, 1]);

        Assert.Equal(2, sampler.Next([2f, -2f, 1.5f]));
        Assert.Equal(0, unpenalized.Next([2f, -2f, 1.5f]));
    }

    [Fact]
    public void Next_RepetitionPenalty_AppliesToObservedGeneratedTokens()
    {
        var sampler = Sampler(2, new GenerationParameters { Greedy = true, RepetitionPenalty = 4f }, []);

        Assert.Equal(0, sampler.Next([2f, 1f]));
        sampler.Observe(0);
        Assert.Equal(1, sampler.Next([2f, 1f])); // 2 / 4 = 0.5 < 1
    }

    [Fact]
    public void Next_TopKOne_AlwaysPicksTheBest()
    {
        for (int seed = 0; seed < 50; seed++)
        {
            var sampler = Sampler(4, new GenerationParameters { Temperature = 5f, TopK = 1, TopP = 1f }, [], seed);
            Assert.Equal(1, sampler.Next([1f, 1.2f, 1.1f, 0.9f]));
        }
    }

    [Fact]
    public void Next_TopK_NeverPicksOutsideTheKBest()
    {
        var sampler = Sampler(5, new GenerationParameters { Temperature = 10f, TopK = 2, TopP = 1f }, [], seed: 3);
        float[] logits = [0.1f, 0.5f, 0.4f, 0.45f, 0.2f];
        var picked = new HashSet<int>();
        for (int i = 0; i < 400; i++)
        {
            picked.Add(sampler.Next(logits));
        }

        Assert.Equal([1, 3], picked.Order());
    }

    [Fact]
    public void Next_TopP_KeepsTheSmallestSetReachingP()
    {
        // Probabilities 0.5, 0.3, 0.2 (as logits ln p).
        float[] logits = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.2f)];
        var topP06 = Sampler(3, new GenerationParameters { Temperature = 1f, TopK = 0, TopP = 0.6f }, [], seed: 5);
        var topP05 = Sampler(3, new GenerationParameters { Temperature = 1f, TopK = 0, TopP = 0.5f }, [], seed: 5);
        var picked06 = new HashSet<int>();
        var picked05 = new HashSet<int>();
        for (int i = 0; i < 400; i++)
        {
            picked06.Add(topP06.Next(logits));
            picked05.Add(topP05.Next(logits));
        }

        Assert.Equal([0, 1], picked06.Order());
        Assert.Equal([0], picked05);
    }

    [Fact]
    public void Next_PlainSampling_FollowsTheSoftmax()
    {
        // p = 0.75 / 0.25; 4000 draws with a fixed seed: expect about 3000 zeros (sd ~27).
        var sampler = Sampler(2, new GenerationParameters { Temperature = 1f, TopK = 0, TopP = 1f }, [], seed: 11);
        float[] logits = [MathF.Log(3f), 0f];
        int zeros = 0;
        for (int i = 0; i < 4000; i++)
        {
            zeros += sampler.Next(logits) == 0 ? 1 : 0;
        }

        Assert.InRange(zeros, 2850, 3150);
    }

    [Fact]
    public void Next_SameSeed_SameSequence()
    {
        var parameters = new GenerationParameters { Temperature = 1f, TopK = 3, TopP = 0.9f };
        float[] logits = [0.1f, 0.2f, 0.3f, 0.25f, 0.05f];
        var a = Sampler(5, parameters, [], seed: 99);
        var b = Sampler(5, parameters, [], seed: 99);

        var first = Enumerable.Range(0, 64).Select(_ => a.Next(logits)).ToList();
        var second = Enumerable.Range(0, 64).Select(_ => b.Next(logits)).ToList();

        Assert.Equal(first, second);
        Assert.True(first.Distinct().Count() > 1);
    }

    [Fact]
    public void Reset_ClearsTokensSeenByThePreviousGeneration()
    {
        var sampler = Sampler(2, new GenerationParameters { Greedy = true, RepetitionPenalty = 4f }, [0]);
        Assert.Equal(1, sampler.Next([2f, 1f]));

        sampler.Reset(new GenerationParameters { Greedy = true, RepetitionPenalty = 4f }, new Random(0), []);

        Assert.Equal(0, sampler.Next([2f, 1f]));
    }

    private static LogitsSampler Sampler(int vocab, GenerationParameters parameters, int[] prompt, int seed = 0)
    {
        var sampler = new LogitsSampler(vocab);
        sampler.Reset(parameters, new Random(seed), prompt);
        return sampler;
    }
}
