namespace EdgeNode.Shared.Inference;

/// <summary>
/// Turns one row of logits [vocab] into the next token id, as Hugging Face transformers'
/// generate() does: RepetitionPenaltyLogitsProcessor, then for sampling TemperatureLogitsWarper,
/// TopKLogitsWarper, TopPLogitsWarper, softmax and one multinomial draw; for greedy decoding
/// the penalty then argmax (first index on ties, as torch.argmax).
/// </summary>
/// <remarks>
/// All buffers are allocated once per vocabulary size and reused for every token: choosing a
/// token allocates nothing. Not thread-safe: one sampler per generator.
/// </remarks>
internal sealed class LogitsSampler
{
    private readonly int _vocabSize;
    private readonly float[] _scores;
    private readonly bool[] _seen;
    private readonly List<int> _seenIds = [];
    private readonly float[] _candidateKeys;
    private readonly int[] _candidateIds;
    private readonly float[] _probabilities;

    private GenerationParameters _parameters = new();
    private Random _random = new(0);

    public LogitsSampler(int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        _vocabSize = vocabSize;
        _scores = new float[vocabSize];
        _seen = new bool[vocabSize];
        _candidateKeys = new float[vocabSize];
        _candidateIds = new int[vocabSize];
        _probabilities = new float[vocabSize];
    }

    /// <summary>Starts a generation: parameters, random source and the prompt's tokens (for the penalty).</summary>
    public void Reset(GenerationParameters parameters, Random random, IEnumerable<int> promptTokens)
    {
        _parameters = parameters;
        _random = random;
        foreach (int id in _seenIds)
        {
            _seen[id] = false;
        }

        _seenIds.Clear();
        foreach (int id in promptTokens)
        {
            Observe(id);
        }
    }

    /// <summary>Records a token present in the sequence (the repetition penalty applies to it from now on).</summary>
    public void Observe(int tokenId)
    {
        if ((uint)tokenId < (uint)_vocabSize && !_seen[tokenId])
        {
            _seen[tokenId] = true;
            _seenIds.Add(tokenId);
        }
    }

    /// <summary>Chooses the next token from <paramref name="logits"/> [vocab].</summary>
    public int Next(ReadOnlySpan<float> logits)
    {
        if (logits.Length != _vocabSize)
        {
            throw new ArgumentException($"expected {_vocabSize} logits, got {logits.Length}", nameof(logits));
        }

        var scores = _scores.AsSpan();
        logits.CopyTo(scores);
        ApplyRepetitionPenalty(scores);

        if (_parameters.IsGreedy)
        {
            return ArgMax(scores);
        }

        float inverseTemperature = 1f / _parameters.Temperature;
        if (inverseTemperature != 1f)
        {
            foreach (ref float score in scores)
            {
                score *= inverseTemperature;
            }
        }

        int topK = _parameters.TopK;
        bool useTopP = _parameters.TopP < 1f;
        int count;
        if (topK > 0 && topK < _vocabSize)
        {
            count = SelectTopK(scores, topK);
        }
        else if (useTopP)
        {
            count = SortAll(scores);
        }
        else
        {
            return SampleUnsorted(scores);
        }

        // Candidates are sorted by descending score: softmax over them (top-k removed the rest).
        var ids = _candidateIds.AsSpan(0, count);
        var probabilities = _probabilities.AsSpan(0, count);
        float max = -_candidateKeys[0];
        double total = 0;
        for (int i = 0; i < count; i++)
        {
            float p = (float)Math.Exp(-_candidateKeys[i] - max);
            probabilities[i] = p;
            total += p;
        }

        if (useTopP)
        {
            // TopPLogitsWarper keeps a token when the probability mass strictly above it is below
            // top_p, and always keeps the most likely one.
            double threshold = _parameters.TopP * total;
            double before = 0;
            int kept = 0;
            while (kept < count && (kept == 0 || before < threshold))
            {
                before += probabilities[kept];
                kept++;
            }

            count = kept;
            total = before;
        }

        double draw = _random.NextDouble() * total;
        double cumulative = 0;
        for (int i = 0; i < count; i++)
        {
            cumulative += probabilities[i];
            if (draw < cumulative)
            {
                return ids[i];
            }
        }

        return ids[count - 1];
    }

    private void ApplyRepetitionPenalty(Span<float> scores)
    {
        float penalty = _parameters.RepetitionPenalty;
        if (penalty == 1f)
        {
            return;
        }

        foreach (int id in _seenIds)
        {
            float score = scores[id];
            scores[id] = score < 0 ? score * penalty : score / penalty;
        }
    }

    private static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        float bestScore = scores[0];
        for (int i = 1; i < scores.Length; i++)
        {
            if (scores[i] > bestScore)
            {
                bestScore = scores[i];
                best = i;
            }
        }

        return best;
    }

    /// <summary>
    /// Puts the <paramref name="k"/> highest scores into the candidate buffers, sorted by
    /// descending score (ties: lower id first). Keys are negated scores. O(V log k) with a min-heap.
    /// </summary>
    private int SelectTopK(ReadOnlySpan<float> scores, int k)
    {
        var heapScores = _probabilities.AsSpan(0, k);
        var heapIds = _candidateIds.AsSpan(0, k);
        for (int i = 0; i < k; i++)
        {
            heapScores[i] = scores[i];
            heapIds[i] = i;
        }

        for (int i = (k / 2) - 1; i >= 0; i--)
        {
            SiftDown(heapScores, heapIds, i);
        }

        for (int id = k; id < scores.Length; id++)
        {
            if (scores[id] > heapScores[0])
            {
                heapScores[0] = scores[id];
                heapIds[0] = id;
                SiftDown(heapScores, heapIds, 0);
            }
        }

        for (int i = 0; i < k; i++)
        {
            _candidateKeys[i] = -heapScores[i];
        }

        SortCandidates(k);
        return k;
    }

    /// <summary>Min-heap on score; among equal scores the higher id is "smaller" so lower ids survive.</summary>
    private static void SiftDown(Span<float> scores, Span<int> ids, int index)
    {
        int count = scores.Length;
        while (true)
        {
            int smallest = index;
            int left = (2 * index) + 1;
            int right = left + 1;
            if (left < count && Less(scores[left], ids[left], scores[smallest], ids[smallest]))
            {
                smallest = left;
            }

            if (right < count && Less(scores[right], ids[right], scores[smallest], ids[smallest]))
            {
                smallest = right;
            }

            if (smallest == index)
            {
                return;
            }

            (scores[index], scores[smallest]) = (scores[smallest], scores[index]);
            (ids[index], ids[smallest]) = (ids[smallest], ids[index]);
            index = smallest;
        }
    }

    private static bool Less(float scoreA, int idA, float scoreB, int idB) =>
        scoreA < scoreB || (scoreA == scoreB && idA > idB);

    private int SortAll(ReadOnlySpan<float> scores)
    {
        for (int i = 0; i < scores.Length; i++)
        {
            _candidateKeys[i] = -scores[i];
            _candidateIds[i] = i;
        }

        SortCandidates(scores.Length);
        return scores.Length;
    }

    /// <summary>Sorts the first <paramref name="count"/> candidates by key (negated score), then id.</summary>
    private void SortCandidates(int count)
    {
        // Array.Sort is unstable; sorting (key, id) pairs makes ties deterministic and id-ordered.
        var keys = _candidateKeys.AsSpan(0, count);
        var ids = _candidateIds.AsSpan(0, count);
        keys.Sort(ids);
        int start = 0;
        while (start < count)
        {
            int end = start + 1;
            while (end < count && keys[end] == keys[start])
            {
                end++;
            }

            if (end - start > 1)
            {
                ids[start..end].Sort();
            }

            start = end;
        }
    }

    /// <summary>Samples from the softmax of all scores (no top-k, no top-p): no sort needed.</summary>
    private int SampleUnsorted(ReadOnlySpan<float> scores)
    {
        float max = scores[0];
        for (int i = 1; i < scores.Length; i++)
        {
            max = Math.Max(max, scores[i]);
        }

        var probabilities = _probabilities.AsSpan(0, scores.Length);
        double total = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            float p = (float)Math.Exp(scores[i] - max);
            probabilities[i] = p;
            total += p;
        }

        double draw = _random.NextDouble() * total;
        double cumulative = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            cumulative += probabilities[i];
            if (draw < cumulative)
            {
                return i;
            }
        }

        return scores.Length - 1;
    }
}
