using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// Machine-independent pseudo-random weights. Integers come from SplitMix64 (Steele, Lea, Flood, "Fast splittable
/// pseudorandom number generators", OOPSLA 2014; constants as in Vigna's reference splitmix64.c). Floats are made
/// only with integer arithmetic, int→double conversion, one double multiply and a double→float cast, all exact or
/// correctly rounded under IEEE 754, so every machine produces the same bits. No Math.Exp/Log/Sin/Cos/Pow (libm
/// results differ between platforms).
/// </summary>
internal static class DeterministicRandom
{
    /// <summary>Elements per independently seeded chunk: large tensors are filled in parallel, chunk by chunk.</summary>
    internal const int ChunkLength = 1 << 20;

    // Sum of four 16-bit uniforms: range [0, 4·65535], mean 2·65535, variance 4·(65536² − 1)/12.
    private const int IrwinHallMean = 2 * 65535;
    private static readonly double IrwinHallStd = Math.Sqrt(4.0 * ((65536.0 * 65536.0) - 1.0) / 12.0);

    /// <summary>The first SplitMix64 output of a generator seeded with <paramref name="state"/> (a stateless mixer).</summary>
    internal static ulong Mix(ulong state)
    {
        ulong z = state + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// The seed of the stream for the tensor called <paramref name="name"/> under the model seed
    /// <paramref name="seed"/>: SplitMix64 of the seed combined with the 64-bit FNV-1a hash of the UTF-8 name, so that
    /// every tensor's values depend only on (seed, name), not on the order in which tensors are generated.
    /// </summary>
    internal static ulong StreamSeed(ulong seed, string name)
    {
        ulong hash = 0xCBF29CE484222325UL;
        foreach (byte b in Encoding.UTF8.GetBytes(name))
        {
            hash = (hash ^ b) * 0x100000001B3UL;
        }

        return Mix(Mix(seed) ^ hash);
    }

    /// <summary>
    /// Fills <paramref name="destination"/>, float32 values in ONNX raw_data order (little-endian; the synthesizer
    /// refuses big-endian machines), with a bell-shaped spread of mean 0 and standard deviation <paramref name="std"/>: each value is an Irwin-Hall sum of
    /// four 16-bit uniforms cut from one SplitMix64 output (bounded at ±3.46 std). Chunks of
    /// <see cref="ChunkLength"/> values have their own stream derived from (<paramref name="streamSeed"/>, chunk
    /// index) and are filled in parallel; the result does not depend on the number of threads.
    /// </summary>
    internal static void FillBell(byte[] destination, ulong streamSeed, double std)
    {
        int length = destination.Length / sizeof(float);
        double factor = std / IrwinHallStd;
        int chunks = (length + ChunkLength - 1) / ChunkLength;
        Parallel.For(0, chunks, chunk =>
        {
            int start = chunk * ChunkLength;
            int count = Math.Min(ChunkLength, length - start);
            Span<float> values = MemoryMarshal.Cast<byte, float>(destination.AsSpan(start * sizeof(float), count * sizeof(float)));
            FillBellChunk(values, Mix(streamSeed ^ (ulong)chunk), factor);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code on the one call that matters
    private static void FillBellChunk(Span<float> values, ulong state, double factor)
    {
        for (int i = 0; i < values.Length; i++)
        {
            state += 0x9E3779B97F4A7C15UL;
            ulong z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            int sum = (int)(z & 0xFFFF) + (int)((z >> 16) & 0xFFFF) + (int)((z >> 32) & 0xFFFF) + (int)(z >> 48);
            values[i] = (float)((sum - IrwinHallMean) * factor);
        }
    }
}
