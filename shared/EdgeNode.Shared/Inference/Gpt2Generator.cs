using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Shared.Inference;

/// <summary>Receives the logits row [vocab] each step chooses from (step 0 = prefill). Test hook.</summary>
internal delegate void StepLogitsObserver(int step, ReadOnlySpan<float> logits);

/// <summary>
/// Autoregressive text generation with a KV cache on a <see cref="Gpt2Model"/>.
/// </summary>
/// <remarks>
/// <para>Per call: tokenize; prefill the whole prompt in one Run with zero-length past tensors
/// [1, n_head, 0, head_dim] (generation case 1), attention mask of ones and position ids derived
/// from the mask; then one decode Run per new token, feeding the token, its position and the
/// previous step's <c>present.*</c> outputs as <c>past_key_values.*</c>. Each step's outputs are
/// disposed only after the next Run has returned (they are its inputs); every OrtValue is
/// disposed before Generate returns.</para>
/// <para>Thread-safety: one generation at a time per generator, and one generator at a time per
/// model. The generator reuses its token-choice buffers (vocab-sized arrays) across calls.</para>
/// </remarks>
public sealed partial class Gpt2Generator
{
    private readonly Gpt2Model _model;
    private readonly Gpt2Tokenizer _tokenizer;
    private readonly LogitsSampler _sampler;
    private readonly long[] _attentionMask;

    /// <summary>use_cache_branch values [1] for merged decoders; their buffers live as long as the process (two bools).</summary>
    private static readonly OrtValue UseCacheFalse = OrtValue.CreateTensorValueFromMemory(new bool[] { false }, [1]);
    private static readonly OrtValue UseCacheTrue = OrtValue.CreateTensorValueFromMemory(new bool[] { true }, [1]);

    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public Gpt2Generator(Gpt2Model model, Gpt2Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _model = model;
        _tokenizer = tokenizer;
        _sampler = new LogitsSampler(model.Info.VocabSize);
        _attentionMask = new long[model.Info.NPositions];
        Array.Fill(_attentionMask, 1L);
    }

    /// <summary>Test hook: sees each step's logits before the token is chosen.</summary>
    internal StepLogitsObserver? LogitsObserver { get; set; }

    /// <summary>Test hook: called just before each model Run with the number of Runs done so far (after the
    /// cancellation check, so a cancel from here can only be honoured by RunOptions.Terminate).</summary>
    internal Action<int>? BeforeRun { get; set; }

    /// <summary>Test hook: counts model Runs (prefill + decode steps) of the last generation.</summary>
    internal int RunCount { get; private set; }

    /// <summary>
    /// Checks that a prompt of <paramref name="promptTokens"/> tokens plus
    /// <paramref name="maxNewTokens"/> new tokens fits the model's context (n_positions, DESIGN.md §2).
    /// </summary>
    /// <returns>Null when it fits, else a <see cref="GenerationError.PromptTooLong"/> error giving the numbers.</returns>
    public GenerationError? CheckFits(int promptTokens, int maxNewTokens)
    {
        int limit = _model.Info.NPositions;
        long total = (long)promptTokens + maxNewTokens;
        if (total <= limit)
        {
            return null;
        }

        return new GenerationError(
            GenerationError.PromptTooLong,
            string.Create(CultureInfo.InvariantCulture,
                $"prompt of {promptTokens} tokens + max_new_tokens {maxNewTokens} = {total} tokens exceeds the model's context of {limit} tokens (n_positions)"));
    }

    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/>.
    /// </summary>
    /// <param name="prompt">The prompt. An empty prompt is fed as &lt;|endoftext|&gt; (GPT-2's
    /// unconditional start) and reported with zero prompt tokens.</param>
    /// <param name="parameters">Decoding parameters (see <see cref="GenerationParameters"/>).</param>
    /// <param name="cancellationToken">Checked before the prefill and before every decode step;
    /// it also terminates a Run in progress (RunOptions.Terminate). A canceled generation returns
    /// a <see cref="GenerationError.Canceled"/> error having run at most one more step.</param>
    /// <returns>The result, or an error: <see cref="GenerationError.PromptTooLong"/> when prompt +
    /// max_new_tokens exceed n_positions, <see cref="GenerationError.Canceled"/>, or
    /// <see cref="GenerationError.ModelError"/> when ONNX Runtime fails.</returns>
    /// <exception cref="ArgumentException">A parameter is out of range (the message names it;
    /// callers validate requests first with <see cref="GenerationParameters.Validate"/>).</exception>
    public GenerationOutcome Generate(string prompt, GenerationParameters parameters, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(parameters);
        string? invalid = parameters.Validate();
        if (invalid is not null)
        {
            throw new ArgumentException(invalid, nameof(parameters));
        }

        RunCount = 0;
        var promptTokens = _tokenizer.Encode(prompt);
        int[] context = promptTokens.Count > 0 ? [.. promptTokens] : [Gpt2Tokenizer.EndOfText];
        var tooLong = CheckFits(context.Length, parameters.MaxNewTokens);
        if (tooLong is not null)
        {
            return GenerationOutcome.Failure(tooLong);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return Canceled(0);
        }

        var random = parameters.Seed is long seed ? new Random(FoldSeed(seed)) : new Random();
        _sampler.Reset(parameters, random, context);
        var text = new GeneratedText(_tokenizer, parameters.Stop, streaming: parameters.OnToken is not null);
        var generated = new List<int>(parameters.MaxNewTokens);

        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(static state => ((RunOptions)state!).Terminate = true, runOptions);
        try
        {
            return Decode(context, promptTokens, parameters, text, generated, runOptions, cancellationToken);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            // RunOptions.Terminate aborted a Run in progress.
            return Canceled(generated.Count);
        }
        catch (OnnxRuntimeException ex)
        {
            Log.GenerationFailed(_model.Logger, generated.Count, ex);
            return GenerationOutcome.Failure(new GenerationError(GenerationError.ModelError, $"ONNX Runtime failed: {ex.Message}"));
        }
    }

    private GenerationOutcome Decode(
        int[] context,
        IReadOnlyList<int> promptTokens,
        GenerationParameters parameters,
        GeneratedText text,
        List<int> generated,
        RunOptions runOptions,
        CancellationToken cancellationToken)
    {
        var info = _model.Info;
        var session = _model.Session;
        string[] inputNames = _model.InputNames;
        string[] outputNames = _model.OutputNames;
        var inputs = new OrtValue[inputNames.Length];
        IDisposableReadOnlyCollection<OrtValue>? outputs = null;
        var tokenBuffer = new long[1];
        var positionBuffer = new long[1];
        OrtValue? tokenValue = null, positionValue = null, emptyPast = null;
        try
        {
            // Prefill: the whole context over an empty KV cache.
            long started = Stopwatch.GetTimestamp();
            var ids = new long[context.Length];
            for (int i = 0; i < context.Length; i++)
            {
                ids[i] = context[i];
            }

            var positions = new long[context.Length];
            Gpt2Model.FillPositionIds(_attentionMask.AsSpan(0, context.Length), positions);
            emptyPast = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [1, info.NHead, 0, info.HeadDim]);
            using (var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [1, context.Length]))
            using (var maskValue = CreateMask(context.Length))
            using (var positionsValue = OrtValue.CreateTensorValueFromMemory(positions, [1, context.Length]))
            {
                inputs[0] = idsValue;
                inputs[1] = maskValue;
                SetOptional(inputs, positionsValue, useCache: false);
                for (int i = _model.FirstPastInput; i < inputs.Length; i++)
                {
                    inputs[i] = emptyPast;
                }

                BeforeRun?.Invoke(RunCount);
                outputs = session.Run(runOptions, inputNames, inputs, outputNames);
                RunCount++;
            }

            int length = context.Length;
            int next = Choose(outputs[0], step: 0, rows: length);
            double prefillMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;

            // Decode: one token per Run, the KV cache carried over from the previous outputs.
            long decodeStarted = Stopwatch.GetTimestamp();
            tokenValue = OrtValue.CreateTensorValueFromMemory(tokenBuffer, [1, 1]);
            positionValue = OrtValue.CreateTensorValueFromMemory(positionBuffer, [1, 1]);
            while (true)
            {
                generated.Add(next);
                _sampler.Observe(next);
                var finish = Finish(next, generated, parameters, text, out string? finalText);
                Report(parameters, text, generated, next, finalText);
                if (finish is FinishReason reason)
                {
                    double decodeMs = generated.Count > 1 ? Stopwatch.GetElapsedTime(decodeStarted).TotalMilliseconds : 0;
                    return GenerationOutcome.Success(new GenerationResult(
                        finalText!, promptTokens, generated.ToArray(), reason, prefillMs, decodeMs));
                }

                if (cancellationToken.IsCancellationRequested)
                {
                    return Canceled(generated.Count);
                }

                tokenBuffer[0] = next;
                positionBuffer[0] = length; // cumsum(mask) - 1 for an unpadded row
                length++;
                using var maskValue = CreateMask(length);
                inputs[0] = tokenValue;
                inputs[1] = maskValue;
                SetOptional(inputs, positionValue, useCache: true);
                for (int i = _model.FirstPastInput; i < inputs.Length; i++)
                {
                    inputs[i] = outputs[1 + i - _model.FirstPastInput];
                }

                BeforeRun?.Invoke(RunCount);
                var stepOutputs = session.Run(runOptions, inputNames, inputs, outputNames);
                RunCount++;
                outputs.Dispose(); // the past this Run read: safe to free only now
                outputs = stepOutputs;
                next = Choose(outputs[0], step: generated.Count, rows: 1);
            }
        }
        finally
        {
            outputs?.Dispose();
            tokenValue?.Dispose();
            positionValue?.Dispose();
            emptyPast?.Dispose();
        }
    }

    /// <summary>Fills the inputs only some variants have: position_ids, and use_cache_branch (merged
    /// decoder: false with the empty past of the prefill, true afterwards; generation case 3).</summary>
    private void SetOptional(OrtValue[] inputs, OrtValue positions, bool useCache)
    {
        if (_model.PositionIdsInput >= 0)
        {
            inputs[_model.PositionIdsInput] = positions;
        }

        if (_model.UseCacheBranchInput >= 0)
        {
            inputs[_model.UseCacheBranchInput] = useCache ? UseCacheTrue : UseCacheFalse;
        }
    }

    /// <summary>An attention mask of ones [1, length] over the shared buffer (no copy).</summary>
    private OrtValue CreateMask(int length) =>
        OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _attentionMask.AsMemory(0, length), [1, length]);

    /// <summary>Chooses the next token from the last row of logits [1, rows, vocab].</summary>
    private int Choose(OrtValue logitsValue, int step, int rows)
    {
        int vocab = _model.Info.VocabSize;
        var logits = logitsValue.GetTensorDataAsSpan<float>().Slice((rows - 1) * vocab, vocab);
        LogitsObserver?.Invoke(step, logits);
        return _sampler.Next(logits);
    }

    private static FinishReason? Finish(
        int token, List<int> generated, GenerationParameters parameters, GeneratedText text, out string? finalText)
    {
        finalText = null;
        bool eos = token == Gpt2Tokenizer.EndOfText;
        var textTokens = eos ? generated.Take(generated.Count - 1) : generated;
        if (text.IsTracking || eos || generated.Count >= parameters.MaxNewTokens)
        {
            int stopAt = text.Update(textTokens);
            if (stopAt >= 0)
            {
                finalText = text.Text[..stopAt];
                return FinishReason.Stop;
            }
        }

        if (eos)
        {
            finalText = text.Text;
            return FinishReason.Eos;
        }

        if (generated.Count >= parameters.MaxNewTokens)
        {
            finalText = text.Text;
            return FinishReason.Length;
        }

        return null;
    }

    private static void Report(GenerationParameters parameters, GeneratedText text, List<int> generated, int token, string? finalText)
    {
        if (parameters.OnToken is { } onToken)
        {
            onToken(new GeneratedToken(generated.Count - 1, token, text.Release(finalText), IsLast: finalText is not null));
        }
    }

    private static GenerationOutcome Canceled(int generatedTokens) =>
        GenerationOutcome.Failure(new GenerationError(
            GenerationError.Canceled,
            string.Create(CultureInfo.InvariantCulture, $"generation was canceled after {generatedTokens} tokens")));

    /// <summary>Folds a 64-bit seed into System.Random's 32-bit seed (whose sequence is stable across .NET versions).</summary>
    private static int FoldSeed(long seed) => unchecked((int)seed ^ (int)(seed >> 32));
}
