using System.Runtime.InteropServices;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Shared.Tests.Inference.Synthesis;

public sealed class DeterministicRandomTests
{
    [Fact]
    public void Mix_SplitMix64ReferenceState0_KnownOutputs()
    {
        // First outputs of Vigna's splitmix64.c seeded with 0 (state advanced by the golden gamma before mixing).
        Assert.Equal(0xE220A8397B1DCDAFUL, DeterministicRandom.Mix(0));
        Assert.Equal(0x6E789E6AA1B965F4UL, DeterministicRandom.Mix(0x9E3779B97F4A7C15UL));
    }

    [Fact]
    public void FillBell_TwoMillionValues_MeanZeroAndRequestedStd()
    {
        const double Std = 0.3;
        float[] values = Fill(2_000_000, seed: 5, Std);

        double mean = values.Average(v => (double)v);
        double sd = Math.Sqrt(values.Average(v => ((double)v - mean) * ((double)v - mean)));
        double max = values.Max(v => Math.Abs((double)v));

        // Standard error of the mean: Std / sqrt(2e6) ≈ 2.1e-4; of the std: ≈ Std · 5e-4. Bounds are > 10 standard errors.
        Assert.InRange(mean, -0.005, 0.005);
        Assert.InRange(sd, Std * 0.99, Std * 1.01);

        // Irwin-Hall(4) is bounded at ±sqrt(12) std.
        Assert.True(max <= Std * Math.Sqrt(12) * 1.000001, $"max |value| {max}");
        Assert.True(max > Std * 2.5, $"max |value| {max}: the spread has no tails");
    }

    [Fact]
    public void FillBell_LongerFill_StartsWithTheShorterFill()
    {
        // Chunks are seeded independently, so the values do not depend on the length or on how threads split the work.
        float[] shortFill = Fill(DeterministicRandom.ChunkLength + 17, seed: 9, std: 1);
        float[] longFill = Fill((3 * DeterministicRandom.ChunkLength) + 5, seed: 9, std: 1);

        Assert.True(longFill.AsSpan(0, shortFill.Length).SequenceEqual(shortFill));
    }

    [Fact]
    public void StreamSeed_DifferentNamesOrSeeds_DifferentStreams()
    {
        ulong a = DeterministicRandom.StreamSeed(1, "transformer.h.0.attn.c_attn.weight");

        Assert.Equal(a, DeterministicRandom.StreamSeed(1, "transformer.h.0.attn.c_attn.weight"));
        Assert.NotEqual(a, DeterministicRandom.StreamSeed(1, "transformer.h.1.attn.c_attn.weight"));
        Assert.NotEqual(a, DeterministicRandom.StreamSeed(2, "transformer.h.0.attn.c_attn.weight"));
    }

    private static float[] Fill(int count, ulong seed, double std)
    {
        byte[] bytes = new byte[count * sizeof(float)];
        DeterministicRandom.FillBell(bytes, seed, std);
        return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }
}
