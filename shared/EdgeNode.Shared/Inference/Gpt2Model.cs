using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Shared.Inference;

/// <summary>
/// A GPT-2 ONNX model loaded into an ONNX Runtime session: the Hugging Face Optimum (>= 1.14)
/// <c>model.onnx</c> export, FP32 or INT8 (<c>quantize_dynamic</c>), as specified in DESIGN.md §2.
/// </summary>
/// <remarks>
/// <para>Thread-safety: ONNX Runtime allows concurrent <c>Run</c> calls, but a model is meant to
/// be driven by one <see cref="Gpt2Generator"/> at a time (the session's intra-op threads are
/// sized for one generation; two at once only contend). Callers serialize generations.</para>
/// <para>Dispose the model when done: it owns native memory (weights, arena).</para>
/// </remarks>
public sealed class Gpt2Model : IDisposable
{
    /// <summary>Context length assumed when the config metadata lacks n_positions (GPT-2's 1024).</summary>
    public const int DefaultNPositions = 1024;

    private readonly InferenceSession _session;

    private Gpt2Model(InferenceSession session, ModelInfo info, ILogger logger, bool hasPositionIds)
    {
        _session = session;
        Info = info;
        Logger = logger;

        var inputs = new List<string> { Gpt2Signature.InputIds, Gpt2Signature.AttentionMask };
        PositionIdsInput = -1;
        UseCacheBranchInput = -1;
        if (hasPositionIds)
        {
            PositionIdsInput = inputs.Count;
            inputs.Add(Gpt2Signature.PositionIds);
        }

        if (info.Variant == ModelVariant.MergedLegacy)
        {
            UseCacheBranchInput = inputs.Count;
            inputs.Add(Gpt2Signature.UseCacheBranch);
        }

        FirstPastInput = inputs.Count;
        var outputs = new List<string> { Gpt2Signature.Logits };
        for (int layer = 0; layer < info.NLayer; layer++)
        {
            inputs.Add(Gpt2Signature.PastKey(layer));
            inputs.Add(Gpt2Signature.PastValue(layer));
            outputs.Add(Gpt2Signature.PresentKey(layer));
            outputs.Add(Gpt2Signature.PresentValue(layer));
        }

        InputNames = [.. inputs];
        OutputNames = [.. outputs];
    }

    /// <summary>What was loaded: shape, precision, execution provider, variant.</summary>
    public ModelInfo Info { get; }

    /// <summary>
    /// Input names in feeding order: input_ids, attention_mask, then position_ids when the file has it,
    /// use_cache_branch for the merged variant, then past_key_values.{i}.key, past_key_values.{i}.value
    /// for i = 0..n_layer-1 from <see cref="FirstPastInput"/> on.
    /// </summary>
    internal string[] InputNames { get; }

    /// <summary>
    /// Output names in fetch order: logits, then present.{i}.key, present.{i}.value; output
    /// 1 + j feeds input <see cref="FirstPastInput"/> + j on the next step.
    /// </summary>
    internal string[] OutputNames { get; }

    /// <summary>Index of position_ids in <see cref="InputNames"/>, or -1 when the file has none.</summary>
    internal int PositionIdsInput { get; }

    /// <summary>Index of use_cache_branch in <see cref="InputNames"/>, or -1 (not a merged decoder).</summary>
    internal int UseCacheBranchInput { get; }

    /// <summary>Index of past_key_values.0.key in <see cref="InputNames"/>.</summary>
    internal int FirstPastInput { get; }

    internal InferenceSession Session => _session;

    internal ILogger Logger { get; }

    /// <summary>
    /// Loads a model file and checks its signature.
    /// Session: the first usable provider of <see cref="InferenceSettings.ExecutionProviders"/> (each
    /// failure logged as one warning naming the provider and the reason; dynamic INT8 files skip GPU
    /// providers unless <see cref="InferenceSettings.ModelPaths"/> names a file for them),
    /// <see cref="InferenceSettings.IntraOpThreads"/> intra-op threads, 1 inter-op thread,
    /// <see cref="InferenceSettings.GraphOptimizationLevel"/>, memory pattern off (shapes change every
    /// decode step, so a planned pattern is never reused; notes/onnxruntime.md).
    /// The variant (<see cref="ModelVariant"/>) is detected from the input names; n_layer, n_head,
    /// head_dim and vocab are read from the graph's input and output shapes.
    /// </summary>
    /// <param name="path">The model file (the default file, used by every provider without a
    /// <see cref="InferenceSettings.ModelPaths"/> entry).</param>
    /// <param name="settings">Session settings.</param>
    /// <param name="logger">Receives one line describing the loaded model and one warning per provider
    /// that could not be used; null for none.</param>
    /// <exception cref="ModelLoadException">The file is missing, is not an ONNX model ONNX Runtime
    /// can load, or lacks the GPT-2 signature; or no configured provider could be used. The message names
    /// each problem (e.g. "model input 'input_ids' is missing").</exception>
    /// <exception cref="ArgumentOutOfRangeException">IntraOpThreads is below 1.</exception>
    /// <exception cref="ArgumentException">ExecutionProviders is empty or names an unknown provider.</exception>
    public static Gpt2Model Load(string path, InferenceSettings settings, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentOutOfRangeException.ThrowIfLessThan(settings.IntraOpThreads, 1, nameof(settings.IntraOpThreads));
        ArgumentNullException.ThrowIfNull(settings.ExecutionProviders);
        if (settings.ExecutionProviders.Count == 0)
        {
            throw new ArgumentException("ExecutionProviders must name at least one provider", nameof(settings));
        }

        foreach (string name in settings.ExecutionProviders)
        {
            if (ExecutionProviderNames.Normalize(name) is null)
            {
                throw new ArgumentException(
                    $"ExecutionProviders: unknown provider '{name}' (known: {string.Join(", ", ExecutionProviderNames.All)})", nameof(settings));
            }
        }

        logger ??= NullLogger.Instance;
        string fullPath = System.IO.Path.GetFullPath(path);
        if (!File.Exists(fullPath))
        {
            throw new ModelLoadException($"model file '{fullPath}' does not exist");
        }

        long started = Stopwatch.GetTimestamp();
        var failures = new List<string>();
        foreach (string configured in settings.ExecutionProviders)
        {
            string provider = ExecutionProviderNames.Normalize(configured)!;
            bool ownFile = settings.ModelPaths.TryGetValue(provider, out string? providerPath) && !string.IsNullOrWhiteSpace(providerPath);
            string file = ownFile ? System.IO.Path.GetFullPath(providerPath!) : fullPath;
            if (!File.Exists(file))
            {
                Fail(provider, $"model file '{file}' does not exist");
                continue;
            }

            OnnxFileSummary? summary = Scan(file, logger);
            if (provider != ExecutionProviderNames.Cpu && !ownFile && summary is not null && OnnxOpScanner.IsDynamicInt8(summary.Ops))
            {
                Log.ProviderSkippedDynamicInt8(logger, provider, file);
                failures.Add($"{provider}: skipped, dynamic INT8 file");
                continue;
            }

            string precision = summary is null ? "fp32" : OnnxOpScanner.PrecisionOf(summary.Ops);
            InferenceSession? session;
            using (var options = new SessionOptions())
            {
                options.IntraOpNumThreads = settings.IntraOpThreads;
                options.InterOpNumThreads = 1;
                options.ExecutionMode = ExecutionMode.ORT_SEQUENTIAL;
                options.GraphOptimizationLevel = settings.GraphOptimizationLevel;
                options.EnableMemoryPattern = false;
                if (!string.IsNullOrWhiteSpace(settings.OptimizedModelPath))
                {
                    options.OptimizedModelFilePath = settings.OptimizedModelPath;
                }

                try
                {
                    if (provider == ExecutionProviderNames.TensorRT)
                    {
                        settings.OnStage?.Invoke("building TensorRT engine");
                    }

                    ExecutionProviders.Append(options, provider, settings, summary?.Inputs ?? [], DefaultNPositions);
                }
                catch (ProviderUnavailableException ex)
                {
                    Fail(provider, ex.Message);
                    continue;
                }

                try
                {
                    session = new InferenceSession(file, options);
                }
                catch (OnnxRuntimeException ex) when (provider != ExecutionProviderNames.Cpu)
                {
                    Fail(provider, ex.Message);
                    continue;
                }
                catch (OnnxRuntimeException ex)
                {
                    throw new ModelLoadException(
                        $"model file '{file}' is not an ONNX model that ONNX Runtime can load: {ex.Message}", ex);
                }
            }

            return Describe(session, file, provider, precision, started, logger);
        }

        throw new ModelLoadException(
            $"no execution provider could be used for '{fullPath}': {string.Join("; ", failures)}");

        void Fail(string provider, string reason)
        {
            Log.ProviderUnavailable(logger, provider, reason);
            failures.Add($"{provider}: {reason}");
        }
    }

    private static Gpt2Model Describe(InferenceSession session, string file, string provider, string precision, long started, ILogger logger)
    {
        try
        {
            var problems = new List<string>();
            var shape = Gpt2Signature.Validate(
                TensorSignature.From(session.InputMetadata), TensorSignature.From(session.OutputMetadata), problems);
            if (shape is null)
            {
                throw new ModelLoadException(file, problems);
            }

            var (nPositions, nEmbd) = Gpt2Signature.ReadConfig(session.ModelMetadata.CustomMetadataMap);
            var info = new ModelInfo(
                file,
                shape.NLayer,
                shape.NHead,
                shape.HeadDim,
                nEmbd ?? shape.NHead * shape.HeadDim,
                shape.VocabSize,
                nPositions ?? DefaultNPositions,
                provider,
                precision)
            {
                Variant = shape.Variant,
            };
            double elapsedMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            Log.ModelLoaded(logger, file, info.NLayer, info.NHead, info.HeadDim, info.VocabSize, info.NPositions,
                info.Precision, info.ExecutionProvider, elapsedMs);
            return new Gpt2Model(session, info, logger, session.InputMetadata.ContainsKey(Gpt2Signature.PositionIds));
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    private static OnnxFileSummary? Scan(string path, ILogger logger)
    {
        try
        {
            return OnnxOpScanner.Read(path);
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            Log.PrecisionUnknown(logger, path, ex.Message);
            return null;
        }
    }

    public void Dispose() => _session.Dispose();

    /// <summary>
    /// Position ids from an attention mask row, as Hugging Face's GPT-2 generation does:
    /// cumsum(mask) - 1, clipped at 0 (the masked left-padding slots get 0). So a left-padded row
    /// numbers its real tokens 0, 1, 2... exactly as the same prompt alone would (generation case 2).
    /// </summary>
    /// <param name="attentionMask">One row, 1 for a real token and 0 for padding.</param>
    /// <param name="positionIds">Receives one id per mask entry.</param>
    internal static void FillPositionIds(ReadOnlySpan<long> attentionMask, Span<long> positionIds)
    {
        if (positionIds.Length != attentionMask.Length)
        {
            throw new ArgumentException("position ids and attention mask must have the same length", nameof(positionIds));
        }

        long sum = 0;
        for (int i = 0; i < attentionMask.Length; i++)
        {
            sum += attentionMask[i];
            positionIds[i] = Math.Max(0, sum - 1);
        }
    }

    /// <summary>
    /// Runs a left-padded batch from an empty KV cache (a full recompute) and returns each row's
    /// logits at its last position, [vocab] per row. Rows are padded on the left with
    /// &lt;|endoftext|&gt; and attention mask 0; position ids come from the mask.
    /// Used by tests (cached vs recomputed decode, left padding) and as the reference for a
    /// future batched prefill.
    /// </summary>
    internal float[][] ComputeLastLogits(IReadOnlyList<IReadOnlyList<int>> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        int batch = rows.Count;
        int length = rows.Max(r => r.Count);
        var ids = new long[batch * length];
        var mask = new long[batch * length];
        var positions = new long[batch * length];
        for (int b = 0; b < batch; b++)
        {
            int pad = length - rows[b].Count;
            for (int t = 0; t < length; t++)
            {
                ids[(b * length) + t] = t < pad ? Gpt2Tokenizer.EndOfText : rows[b][t - pad];
                mask[(b * length) + t] = t < pad ? 0 : 1;
            }

            FillPositionIds(mask.AsSpan(b * length, length), positions.AsSpan(b * length, length));
        }

        var inputs = new OrtValue[InputNames.Length];
        try
        {
            inputs[0] = OrtValue.CreateTensorValueFromMemory(ids, [batch, length]);
            inputs[1] = OrtValue.CreateTensorValueFromMemory(mask, [batch, length]);
            if (PositionIdsInput >= 0)
            {
                inputs[PositionIdsInput] = OrtValue.CreateTensorValueFromMemory(positions, [batch, length]);
            }

            if (UseCacheBranchInput >= 0)
            {
                inputs[UseCacheBranchInput] = OrtValue.CreateTensorValueFromMemory(new bool[1], [1]); // false: no past
            }

            for (int i = FirstPastInput; i < inputs.Length; i++)
            {
                inputs[i] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [batch, Info.NHead, 0, Info.HeadDim]);
            }

            using var runOptions = new RunOptions();
            using var outputs = _session.Run(runOptions, InputNames, inputs, OutputNames);
            var logits = outputs[0].GetTensorDataAsSpan<float>();
            var result = new float[batch][];
            for (int b = 0; b < batch; b++)
            {
                result[b] = logits.Slice((((b * length) + length - 1) * Info.VocabSize), Info.VocabSize).ToArray();
            }

            return result;
        }
        finally
        {
            foreach (var value in inputs)
            {
                value?.Dispose();
            }
        }
    }
}
