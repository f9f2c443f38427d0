using System.Globalization;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeNode.Shared.Inference;

/// <summary>One graph input or output as the signature check sees it. Dims: -1 for a symbolic (dynamic) dim.</summary>
internal sealed record TensorSignature(string Name, TensorElementType ElementType, IReadOnlyList<int> Dims)
{
    public static IReadOnlyList<TensorSignature> From(IReadOnlyDictionary<string, NodeMetadata> metadata) =>
        metadata
            .Where(kv => kv.Value.IsTensor)
            .Select(kv => new TensorSignature(kv.Key, kv.Value.ElementDataType, kv.Value.Dimensions))
            .ToList();
}

/// <summary>The shape facts read from a valid signature.</summary>
internal sealed record Gpt2Shape(int NLayer, int NHead, int HeadDim, int VocabSize, ModelVariant Variant = ModelVariant.Optimum);

/// <summary>
/// Checks a graph's inputs and outputs against the Hugging Face Optimum (>= 1.14) GPT-2
/// <c>model.onnx</c> signature of DESIGN.md §2:
/// inputs <c>input_ids</c>, <c>attention_mask</c>, <c>position_ids</c> (int64 [batch, seq]) and
/// <c>past_key_values.{i}.key|value</c> (float32 [batch, n_head, past_seq, head_dim]);
/// outputs <c>logits</c> (float32 [batch, seq, vocab]) and <c>present.{i}.key|value</c>
/// (float32 [batch, n_head, past_seq + seq, head_dim]). n_head, head_dim and vocab must be fixed
/// numbers; sequence dims must be dynamic. Symbolic dim names are not compared: ONNX Runtime
/// only needs the ranks, types and fixed sizes to be right.
/// Variants (<see cref="ModelVariant"/>): <c>position_ids</c> may be absent (older exports), and a bool
/// <c>use_cache_branch</c> [1] input marks the legacy merged decoder (<c>decoder_model_merged.onnx</c>).
/// </summary>
internal static class Gpt2Signature
{
    public const string InputIds = "input_ids";
    public const string AttentionMask = "attention_mask";
    public const string PositionIds = "position_ids";
    public const string Logits = "logits";
    public const string UseCacheBranch = "use_cache_branch";

    public static string PastKey(int layer) => $"past_key_values.{layer.ToString(CultureInfo.InvariantCulture)}.key";

    public static string PastValue(int layer) => $"past_key_values.{layer.ToString(CultureInfo.InvariantCulture)}.value";

    public static string PresentKey(int layer) => $"present.{layer.ToString(CultureInfo.InvariantCulture)}.key";

    public static string PresentValue(int layer) => $"present.{layer.ToString(CultureInfo.InvariantCulture)}.value";

    /// <summary>
    /// Validates the signature. Returns the shape, or null with every problem found added to
    /// <paramref name="problems"/> (each names the input or output and the rule it breaks).
    /// </summary>
    public static Gpt2Shape? Validate(
        IReadOnlyList<TensorSignature> inputs, IReadOnlyList<TensorSignature> outputs, List<string> problems)
    {
        var inputsByName = inputs.ToDictionary(i => i.Name, StringComparer.Ordinal);
        var outputsByName = outputs.ToDictionary(o => o.Name, StringComparer.Ordinal);

        var variant = ModelVariant.Optimum;
        if (inputsByName.TryGetValue(UseCacheBranch, out var useCache))
        {
            variant = ModelVariant.MergedLegacy;
            if (useCache.ElementType != TensorElementType.Bool)
            {
                problems.Add($"model input 'use_cache_branch' must be bool, but it is {Describe(useCache.ElementType)}");
            }
            else if (useCache.Dims.Count > 1 || (useCache.Dims.Count == 1 && useCache.Dims[0] > 1))
            {
                problems.Add("model input 'use_cache_branch' must be a bool of shape [1]");
            }
        }
        else if (!inputsByName.ContainsKey(PositionIds))
        {
            variant = ModelVariant.NoPositionIds;
        }

        CheckTokenInput(inputsByName, InputIds, problems);
        CheckTokenInput(inputsByName, AttentionMask, problems);
        if (inputsByName.ContainsKey(PositionIds))
        {
            CheckTokenInput(inputsByName, PositionIds, problems);
        }

        int nLayer = CountLayers(inputsByName.Keys);
        if (nLayer == 0)
        {
            problems.Add("model input 'past_key_values.0.key' is missing (no KV-cache inputs: export with past, e.g. Optimum's text-generation-with-past task)");
        }

        int nHead = -1, headDim = -1;
        for (int layer = 0; layer < nLayer; layer++)
        {
            foreach (string name in new[] { PastKey(layer), PastValue(layer) })
            {
                CheckKvTensor(inputsByName, name, "model input", dynamicSeqDimName: "past_sequence_length", ref nHead, ref headDim, problems);
            }
        }

        int vocab = -1;
        if (!outputsByName.TryGetValue(Logits, out var logits))
        {
            problems.Add("model output 'logits' is missing");
        }
        else if (CheckType(logits, TensorElementType.Float, 3, "model output", problems))
        {
            vocab = logits.Dims[2];
            if (vocab <= 0)
            {
                problems.Add("model output 'logits' dim 2 (vocab) must be a fixed number, but it is dynamic");
            }
            else if (vocab != Gpt2Tokenizer.VocabularySize)
            {
                problems.Add(string.Create(CultureInfo.InvariantCulture,
                    $"model output 'logits' has vocab {vocab}, but the GPT-2 tokenizer has {Gpt2Tokenizer.VocabularySize} tokens"));
            }
        }

        for (int layer = 0; layer < nLayer; layer++)
        {
            foreach (string name in new[] { PresentKey(layer), PresentValue(layer) })
            {
                CheckKvTensor(outputsByName, name, "model output", dynamicSeqDimName: "past_sequence_length + sequence_length", ref nHead, ref headDim, problems);
            }
        }

        foreach (var input in inputs)
        {
            if (!IsKnownInput(input.Name, nLayer))
            {
                problems.Add($"model input '{input.Name}' is not part of the GPT-2 signature (the generator cannot feed it)");
            }
        }

        return problems.Count == 0 ? new Gpt2Shape(nLayer, nHead, headDim, vocab, variant) : null;
    }

    /// <summary>
    /// Reads n_positions (else the older n_ctx) and n_embd from the GPT2Config JSON stored in the
    /// model's metadata_props under "config" (DESIGN.md §2). Missing or unreadable values are null.
    /// </summary>
    public static (int? NPositions, int? NEmbd) ReadConfig(IReadOnlyDictionary<string, string>? metadata)
    {
        if (metadata is null || !metadata.TryGetValue("config", out string? json))
        {
            return (null, null);
        }

        try
        {
            using var document = JsonDocument.Parse(json);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return (null, null);
            }

            return (ReadPositiveInt(document.RootElement, "n_positions") ?? ReadPositiveInt(document.RootElement, "n_ctx"),
                ReadPositiveInt(document.RootElement, "n_embd"));
        }
        catch (JsonException)
        {
            return (null, null);
        }
    }

    private static int? ReadPositiveInt(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number &&
        value.TryGetInt32(out int number) && number > 0
            ? number
            : null;

    private static bool IsKnownInput(string name, int nLayer)
    {
        if (name is InputIds or AttentionMask or PositionIds or UseCacheBranch)
        {
            return true;
        }

        for (int layer = 0; layer < nLayer; layer++)
        {
            if (name == PastKey(layer) || name == PastValue(layer))
            {
                return true;
            }
        }

        return false;
    }

    private static int CountLayers(IEnumerable<string> inputNames)
    {
        int count = inputNames.Count(n => n.StartsWith("past_key_values.", StringComparison.Ordinal) &&
                                          n.EndsWith(".key", StringComparison.Ordinal));
        return count;
    }

    private static void CheckTokenInput(Dictionary<string, TensorSignature> inputs, string name, List<string> problems)
    {
        if (!inputs.TryGetValue(name, out var input))
        {
            problems.Add($"model input '{name}' is missing");
            return;
        }

        if (CheckType(input, TensorElementType.Int64, 2, "model input", problems) && input.Dims[1] > 0)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"model input '{name}' dim 1 (sequence length) must be dynamic, but it is fixed at {input.Dims[1]}"));
        }
    }

    private static void CheckKvTensor(
        Dictionary<string, TensorSignature> tensors,
        string name,
        string kind,
        string dynamicSeqDimName,
        ref int nHead,
        ref int headDim,
        List<string> problems)
    {
        if (!tensors.TryGetValue(name, out var tensor))
        {
            problems.Add($"{kind} '{name}' is missing");
            return;
        }

        if (!CheckType(tensor, TensorElementType.Float, 4, kind, problems))
        {
            return;
        }

        CheckFixedDim(tensor, 1, "n_head", kind, ref nHead, problems);
        CheckFixedDim(tensor, 3, "head_dim", kind, ref headDim, problems);
        if (tensor.Dims[2] > 0)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"{kind} '{name}' dim 2 ({dynamicSeqDimName}) must be dynamic, but it is fixed at {tensor.Dims[2]}"));
        }
    }

    private static void CheckFixedDim(TensorSignature tensor, int axis, string dimName, string kind, ref int expected, List<string> problems)
    {
        int actual = tensor.Dims[axis];
        if (actual <= 0)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"{kind} '{tensor.Name}' dim {axis} ({dimName}) must be a fixed number, but it is dynamic"));
        }
        else if (expected < 0)
        {
            expected = actual;
        }
        else if (actual != expected)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"{kind} '{tensor.Name}' has {dimName} {actual}, but other KV tensors have {expected}"));
        }
    }

    private static bool CheckType(TensorSignature tensor, TensorElementType type, int rank, string kind, List<string> problems)
    {
        bool ok = true;
        if (tensor.ElementType != type)
        {
            problems.Add($"{kind} '{tensor.Name}' must be {Describe(type)}, but it is {Describe(tensor.ElementType)}");
            ok = false;
        }

        if (tensor.Dims.Count != rank)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"{kind} '{tensor.Name}' must have {rank} dims, but it has {tensor.Dims.Count}"));
            ok = false;
        }

        return ok;
    }

    private static string Describe(TensorElementType type) => type switch
    {
        TensorElementType.Float => "float32",
        TensorElementType.Int64 => "int64",
        TensorElementType.Bool => "bool",
        _ => type.ToString().ToLowerInvariant(),
    };
}
