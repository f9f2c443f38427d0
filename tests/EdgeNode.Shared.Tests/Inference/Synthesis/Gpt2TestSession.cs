using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Shared.Tests.Inference.Synthesis;

/// <summary>
/// A plain ONNX Runtime session over an Optimum-layout GPT-2 file, for tests: one Run per call, inputs and outputs
/// as flat row-major arrays. Deliberately independent of the product's inference core.
/// </summary>
internal sealed class Gpt2TestSession : IDisposable
{
    private readonly InferenceSession _session;

    public Gpt2TestSession(byte[] model)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        _session = new InferenceSession(model, options);
        string[] past = _session.InputNames.Where(n => n.StartsWith("past_key_values.", StringComparison.Ordinal)).ToArray();
        Layers = past.Length / 2;
        int[] pastDims = _session.InputMetadata[past[0]].Dimensions;
        Heads = pastDims[1];
        HeadDim = pastDims[3];
        Vocab = _session.OutputMetadata["logits"].Dimensions[2];
    }

    public int Layers { get; }

    public int Heads { get; }

    public int HeadDim { get; }

    public int Vocab { get; }

    public InferenceSession Session => _session;

    /// <summary>One forward pass.</summary>
    /// <param name="batch">B.</param>
    /// <param name="inputIds">[B, S].</param>
    /// <param name="attentionMask">[B, P + S].</param>
    /// <param name="positionIds">[B, S].</param>
    /// <param name="past">2·L tensors [B, H, P, D] in input order (key 0, value 0, key 1, ...), or null for an empty past.</param>
    public StepResult Run(int batch, long[] inputIds, long[] attentionMask, long[] positionIds, IReadOnlyList<float[]>? past = null)
    {
        int sequence = inputIds.Length / batch;
        int total = attentionMask.Length / batch;
        int pastLength = total - sequence;
        var names = new List<string> { "input_ids", "attention_mask", "position_ids" };
        var values = new List<OrtValue>
        {
            OrtValue.CreateTensorValueFromMemory(inputIds, [batch, sequence]),
            OrtValue.CreateTensorValueFromMemory(attentionMask, [batch, total]),
            OrtValue.CreateTensorValueFromMemory(positionIds, [batch, sequence]),
        };
        var outputNames = new List<string> { "logits" };
        for (int i = 0; i < Layers; i++)
        {
            foreach (string kind in new[] { "key", "value" })
            {
                int index = (2 * i) + (kind == "key" ? 0 : 1);
                names.Add($"past_key_values.{i}.{kind}");
                values.Add(OrtValue.CreateTensorValueFromMemory(past?[index] ?? [], [batch, Heads, pastLength, HeadDim]));
                outputNames.Add($"present.{i}.{kind}");
            }
        }

        try
        {
            using var runOptions = new RunOptions();
            using IDisposableReadOnlyCollection<OrtValue> outputs = _session.Run(runOptions, names, values, outputNames);
            float[] logits = outputs[0].GetTensorDataAsSpan<float>().ToArray();
            var presents = new List<float[]>();
            for (int i = 1; i < outputs.Count; i++)
            {
                presents.Add(outputs[i].GetTensorDataAsSpan<float>().ToArray());
            }

            return new StepResult(batch, sequence, Vocab, logits, presents);
        }
        finally
        {
            foreach (OrtValue value in values)
            {
                value.Dispose();
            }
        }
    }

    /// <summary>Logits of one unpadded sequence, full recompute, [S, V].</summary>
    public StepResult RunSequence(IReadOnlyList<long> tokens)
    {
        long[] ids = [.. tokens];
        long[] mask = Enumerable.Repeat(1L, ids.Length).ToArray();
        long[] positions = Enumerable.Range(0, ids.Length).Select(p => (long)p).ToArray();
        return Run(1, ids, mask, positions);
    }

    /// <summary>Greedy decoding by full recompute (no KV cache): the simplest possible loop.</summary>
    public List<long> GreedyFullRecompute(IReadOnlyList<long> prompt, int newTokens)
    {
        var tokens = new List<long>(prompt);
        var generated = new List<long>();
        for (int step = 0; step < newTokens; step++)
        {
            StepResult result = RunSequence(tokens);
            long next = StepResult.ArgMax(result.Row(0, tokens.Count - 1));
            tokens.Add(next);
            generated.Add(next);
        }

        return generated;
    }

    public void Dispose() => _session.Dispose();
}

/// <summary>Outputs of one Run: logits [B, S, V] and the present tensors in output order.</summary>
internal sealed record StepResult(int Batch, int Sequence, int Vocab, float[] Logits, List<float[]> Presents)
{
    public ReadOnlySpan<float> Row(int batchIndex, int position) =>
        Logits.AsSpan(((batchIndex * Sequence) + position) * Vocab, Vocab);

    public static int ArgMax(ReadOnlySpan<float> values)
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
}
