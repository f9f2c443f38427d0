using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Shared.Inference;

/// <summary>Receives row <paramref name="row"/>'s logits [vocab] of each step of a batch (step 0 = prefill). Test hook.</summary>
internal delegate void BatchLogitsObserver(int row, int step, ReadOnlySpan<float> logits);

public sealed partial class Gpt2Generator
{
    /// <summary>Test hook: sees each active row's logits before its token is chosen.</summary>
    internal BatchLogitsObserver? BatchLogitsObserver { get; set; }

    /// <summary>
    /// Generates continuations of several prompts at once: one prefill Run over the left-padded batch
    /// [rows, longest prompt] (padding &lt;|endoftext|&gt; with attention mask 0, position ids
    /// cumsum(mask) − 1 so each row numbers its tokens as if alone; generation case 2), then one decode
    /// Run per step for all rows. Each row has its own sampler, stop sequences and seed, and gives the same
    /// tokens as <see cref="Generate"/> of that prompt alone (FP32 logits equal within 1e-4; INT8 logits
    /// differ slightly, since DynamicQuantizeLinear scales over the whole batch tensor). A finished row is
    /// fed &lt;|endoftext|&gt; until the longest row ends; its output is ignored.
    /// </summary>
    /// <param name="prompts">One prompt per row (at least one). Empty prompts start from &lt;|endoftext|&gt;.</param>
    /// <param name="parameters">Decoding parameters for every row. <see cref="GenerationParameters.OnToken"/> is not called.</param>
    /// <param name="cancellationToken">Checked before every step; it also terminates a Run in progress. Every row
    /// not finished when it fires gets a <see cref="GenerationError.Canceled"/> error.</param>
    /// <returns>One outcome per prompt, in order: a result, or <see cref="GenerationError.PromptTooLong"/> (that
    /// row only), <see cref="GenerationError.Canceled"/>, or <see cref="GenerationError.ModelError"/> (ONNX
    /// Runtime failed, or prompts of different lengths on a model without a position_ids input, whose
    /// positions would ignore the padding).</returns>
    /// <exception cref="ArgumentException">A parameter is out of range, or <paramref name="prompts"/> is empty.</exception>
    public IReadOnlyList<GenerationOutcome> GenerateBatch(
        IReadOnlyList<string> prompts, GenerationParameters parameters, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(parameters);
        if (prompts.Count == 0)
        {
            throw new ArgumentException("at least one prompt is required", nameof(prompts));
        }

        string? invalid = parameters.Validate();
        if (invalid is not null)
        {
            throw new ArgumentException(invalid, nameof(parameters));
        }

        RunCount = 0;
        var outcomes = new GenerationOutcome?[prompts.Count];
        var rows = new List<BatchRow>();
        for (int i = 0; i < prompts.Count; i++)
        {
            ArgumentNullException.ThrowIfNull(prompts[i], nameof(prompts));
            var promptTokens = _tokenizer.Encode(prompts[i]);
            int[] context = promptTokens.Count > 0 ? [.. promptTokens] : [Gpt2Tokenizer.EndOfText];
            if (CheckFits(context.Length, parameters.MaxNewTokens) is { } tooLong)
            {
                outcomes[i] = GenerationOutcome.Failure(tooLong);
                continue;
            }

            var sampler = new LogitsSampler(_model.Info.VocabSize);
            var random = parameters.Seed is long seed ? new Random(FoldSeed(seed)) : new Random();
            sampler.Reset(parameters, random, context);
            rows.Add(new BatchRow(i, context, promptTokens, sampler, new GeneratedText(_tokenizer, parameters.Stop, streaming: false)));
        }

        if (rows.Count > 0 && _model.PositionIdsInput < 0 && rows.Select(r => r.Context.Length).Distinct().Count() > 1)
        {
            var error = new GenerationError(GenerationError.ModelError,
                $"prompts of different lengths need left padding, but this model ({_model.Info.Variant}) has no position_ids input and would number padded rows wrongly; generate them one at a time");
            foreach (var row in rows)
            {
                outcomes[row.Index] = GenerationOutcome.Failure(error);
            }

            rows.Clear();
        }

        if (rows.Count > 0)
        {
            using var runOptions = new RunOptions();
            using var registration = cancellationToken.Register(static state => ((RunOptions)state!).Terminate = true, runOptions);
            try
            {
                DecodeBatch(rows, parameters, runOptions, cancellationToken);
            }
            catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
            {
                // RunOptions.Terminate aborted a Run in progress; unfinished rows are marked below.
            }
            catch (OnnxRuntimeException ex)
            {
                Log.GenerationFailed(_model.Logger, rows.Max(r => r.Generated.Count), ex);
                var error = new GenerationError(GenerationError.ModelError, $"ONNX Runtime failed: {ex.Message}");
                foreach (var row in rows.Where(r => r.Outcome is null))
                {
                    row.Outcome = GenerationOutcome.Failure(error);
                }
            }

            foreach (var row in rows)
            {
                outcomes[row.Index] = row.Outcome ?? Canceled(row.Generated.Count);
            }
        }

        return outcomes.Select(o => o!).ToArray();
    }

    private void DecodeBatch(List<BatchRow> rows, GenerationParameters parameters, RunOptions runOptions, CancellationToken cancellationToken)
    {
        var info = _model.Info;
        int batch = rows.Count;
        int vocab = info.VocabSize;
        string[] inputNames = _model.InputNames;
        string[] outputNames = _model.OutputNames;
        var inputs = new OrtValue[inputNames.Length];
        IDisposableReadOnlyCollection<OrtValue>? outputs = null;
        var disposables = new List<OrtValue>();
        try
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            long started = Stopwatch.GetTimestamp();
            int total = rows.Max(r => r.Context.Length);
            var ids = new long[batch * total];
            var mask = new long[batch * total];
            var positions = new long[batch * total];
            for (int b = 0; b < batch; b++)
            {
                int pad = total - rows[b].Context.Length;
                for (int t = 0; t < total; t++)
                {
                    ids[(b * total) + t] = t < pad ? Gpt2Tokenizer.EndOfText : rows[b].Context[t - pad];
                    mask[(b * total) + t] = t < pad ? 0 : 1;
                }

                Gpt2Model.FillPositionIds(mask.AsSpan(b * total, total), positions.AsSpan(b * total, total));
            }

            var emptyPast = Track(OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [batch, info.NHead, 0, info.HeadDim]));
            inputs[0] = Track(OrtValue.CreateTensorValueFromMemory(ids, [batch, total]));
            inputs[1] = Track(OrtValue.CreateTensorValueFromMemory(mask, [batch, total]));
            SetOptional(inputs, Track(OrtValue.CreateTensorValueFromMemory(positions, [batch, total])), useCache: false);
            for (int i = _model.FirstPastInput; i < inputs.Length; i++)
            {
                inputs[i] = emptyPast;
            }

            outputs = _model.Session.Run(runOptions, inputNames, inputs, outputNames);
            RunCount++;
            int step = 0;
            double prefillMs = 0;
            long decodeStarted = 0;
            var stepIds = new long[batch];
            var stepPositions = new long[batch];
            var lengths = rows.Select(r => (long)r.Context.Length).ToArray();
            while (true)
            {
                int seq = step == 0 ? total : 1;
                var logits = outputs[0].GetTensorDataAsSpan<float>();
                for (int b = 0; b < batch; b++)
                {
                    var row = rows[b];
                    if (row.Outcome is not null)
                    {
                        stepIds[b] = Gpt2Tokenizer.EndOfText;
                        continue;
                    }

                    var rowLogits = logits.Slice((((b * seq) + seq - 1) * vocab), vocab);
                    BatchLogitsObserver?.Invoke(row.Index, step, rowLogits);
                    int next = row.Sampler.Next(rowLogits);
                    row.Generated.Add(next);
                    row.Sampler.Observe(next);
                    stepIds[b] = next;
                    if (Finish(next, row.Generated, parameters, row.Text, out string? finalText) is FinishReason reason)
                    {
                        row.Outcome = GenerationOutcome.Success(new GenerationResult(
                            finalText!, row.PromptTokens, row.Generated.ToArray(), reason, 0, 0));
                    }
                }

                if (step == 0)
                {
                    prefillMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                    decodeStarted = Stopwatch.GetTimestamp();
                }

                if (rows.TrueForAll(r => r.Outcome is not null))
                {
                    double decodeMs = Stopwatch.GetElapsedTime(decodeStarted).TotalMilliseconds;
                    foreach (var row in rows)
                    {
                        if (row.Outcome!.Result is { } result)
                        {
                            row.Outcome = GenerationOutcome.Success(result with
                            {
                                PrefillMs = prefillMs,
                                DecodeMs = result.GeneratedTokens.Count > 1 ? decodeMs : 0,
                            });
                        }
                    }

                    return;
                }

                if (cancellationToken.IsCancellationRequested)
                {
                    return;
                }

                // Next step: one token per row; the mask grows by a column of ones.
                int newTotal = total + 1;
                var newMask = new long[batch * newTotal];
                for (int b = 0; b < batch; b++)
                {
                    Array.Copy(mask, b * total, newMask, b * newTotal, total);
                    newMask[(b * newTotal) + total] = 1;
                    stepPositions[b] = lengths[b]; // cumsum(mask) - 1 at the new column
                    lengths[b]++;
                }

                mask = newMask;
                total = newTotal;
                using var idsValue = OrtValue.CreateTensorValueFromMemory(stepIds, [batch, 1]);
                using var maskValue = OrtValue.CreateTensorValueFromMemory(mask, [batch, total]);
                using var positionsValue = OrtValue.CreateTensorValueFromMemory(stepPositions, [batch, 1]);
                inputs[0] = idsValue;
                inputs[1] = maskValue;
                SetOptional(inputs, positionsValue, useCache: true);
                for (int i = _model.FirstPastInput; i < inputs.Length; i++)
                {
                    inputs[i] = outputs[1 + i - _model.FirstPastInput];
                }

                var stepOutputs = _model.Session.Run(runOptions, inputNames, inputs, outputNames);
                RunCount++;
                outputs.Dispose();
                outputs = stepOutputs;
                step++;
            }
        }
        finally
        {
            outputs?.Dispose();
            foreach (var value in disposables)
            {
                value.Dispose();
            }
        }

        OrtValue Track(OrtValue value)
        {
            disposables.Add(value);
            return value;
        }
    }

    private sealed class BatchRow(int index, int[] context, IReadOnlyList<int> promptTokens, LogitsSampler sampler, GeneratedText text)
    {
        public int Index { get; } = index;

        public int[] Context { get; } = context;

        public IReadOnlyList<int> PromptTokens { get; } = promptTokens;

        public LogitsSampler Sampler { get; } = sampler;

        public GeneratedText Text { get; } = text;

        public List<int> Generated { get; } = [];

        public GenerationOutcome? Outcome { get; set; }
    }
}
