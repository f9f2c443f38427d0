namespace EdgeNode.Shared.Inference;

/// <summary>Why generation ended (the job contract's <c>finish_reason</c>, DESIGN.md §3, written lower-case).</summary>
public enum FinishReason
{
    /// <summary><see cref="GenerationParameters.MaxNewTokens"/> tokens were generated.</summary>
    Length,

    /// <summary>The generated text reached one of <see cref="GenerationParameters.Stop"/>.</summary>
    Stop,

    /// <summary>The model produced &lt;|endoftext|&gt; (id 50256).</summary>
    Eos,
}

/// <summary>
/// Decoding parameters of one job (DESIGN.md §3 request fields). Semantics follow Hugging Face
/// transformers' generate(): logits processors are applied in the order repetition penalty,
/// temperature, top-k, top-p, then one token is sampled.
/// </summary>
public sealed record GenerationParameters
{
    /// <summary>Tokens to generate at most (>= 1). Prompt + this must fit in n_positions.</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>Softmax temperature (>= 0); 0 means greedy decoding (argmax).</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the K most likely tokens before sampling (>= 0); 0 disables the filter.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Nucleus sampling: keep the smallest set of most likely tokens whose probability
    /// reaches P (0 &lt; P &lt;= 1); 1 disables the filter.</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>CTRL-style repetition penalty (> 0; 1 = off): the logit of every token already in
    /// prompt or output is divided by it when positive and multiplied by it when negative
    /// (Keskar et al. 2019, as transformers' RepetitionPenaltyLogitsProcessor).</summary>
    public float RepetitionPenalty { get; init; } = 1.0f;

    /// <summary>
    /// Sampling seed: the same seed, prompt, parameters and model give the same text. This holds
    /// within one .NET version and machine class (CPU instruction set, ONNX Runtime version):
    /// logits and the softmax's Math.Exp may differ in the last bits elsewhere. Null draws a
    /// random seed.
    /// </summary>
    public long? Seed { get; init; }

    /// <summary>Stop sequences: generation ends when the generated text contains one; the text is
    /// cut before it. Empty strings are ignored.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>Forces greedy decoding (argmax) whatever the temperature.</summary>
    public bool Greedy { get; init; }

    /// <summary>
    /// Called on the generating thread after each token is chosen, before the next decode step
    /// (for streaming and progress). Keep it short: it delays the next token. Cancelling the
    /// generation's token from here stops before the next step.
    /// </summary>
    public Action<GeneratedToken>? OnToken { get; init; }

    /// <summary>True when decoding is argmax: <see cref="Greedy"/> or temperature 0.</summary>
    public bool IsGreedy => Greedy || Temperature == 0f;

    /// <summary>
    /// Checks the parameter ranges; returns null when valid, else a message naming the field and
    /// the rule (field names as in the job request, DESIGN.md §3).
    /// </summary>
    public string? Validate()
    {
        if (MaxNewTokens < 1)
        {
            return "max_new_tokens must be at least 1";
        }

        if (!float.IsFinite(Temperature) || Temperature < 0f)
        {
            return "temperature must be a finite number >= 0";
        }

        if (TopK < 0)
        {
            return "top_k must be >= 0 (0 disables it)";
        }

        if (!float.IsFinite(TopP) || TopP <= 0f || TopP > 1f)
        {
            return "top_p must be in (0, 1] (1 disables it)";
        }

        if (!float.IsFinite(RepetitionPenalty) || RepetitionPenalty <= 0f)
        {
            return "repetition_penalty must be a finite number > 0 (1 disables it)";
        }

        if (Stop is null)
        {
            return "stop must not be null";
        }

        return null;
    }
}

/// <summary>One generated token as reported to <see cref="GenerationParameters.OnToken"/>.</summary>
/// <param name="Index">0-based index among the generated tokens.</param>
/// <param name="TokenId">The token id (50256 for &lt;|endoftext|&gt;).</param>
/// <param name="Text">Text that became final with this token. It may be empty: bytes of a
/// character split across tokens, or text that may begin a stop sequence, are held back until
/// resolved. The texts of all tokens of a finished generation concatenate to
/// <see cref="GenerationResult.Text"/>, and never contain a U+FFFD the final text lacks
/// (generation case 5).</param>
/// <param name="IsLast">True for the last token of a finished generation.</param>
public readonly record struct GeneratedToken(int Index, int TokenId, string Text, bool IsLast);

/// <summary>A finished generation.</summary>
/// <param name="Text">Generated text (prompt excluded), cut before a stop sequence, without &lt;|endoftext|&gt;.</param>
/// <param name="PromptTokens">Token ids of the prompt.</param>
/// <param name="GeneratedTokens">Every token id chosen, including the tokens of a matched stop
/// sequence and a final &lt;|endoftext|&gt; (they were generated: usage counts them).</param>
/// <param name="FinishReason">Why it ended.</param>
/// <param name="PrefillMs">Milliseconds of the prefill: the Run over the whole prompt plus
/// choosing the first token (time to first token, tokenization excluded).</param>
/// <param name="DecodeMs">Milliseconds of all decode steps (one Run and one token choice each)
/// after the first token.</param>
public sealed record GenerationResult(
    string Text,
    IReadOnlyList<int> PromptTokens,
    IReadOnlyList<int> GeneratedTokens,
    FinishReason FinishReason,
    double PrefillMs,
    double DecodeMs)
{
    /// <summary>Prompt tokens per second of prefill: PromptTokens / PrefillMs × 1000 (0 when not measurable).</summary>
    public double PrefillTokensPerSecond => PrefillMs > 0 ? PromptTokens.Count * 1000.0 / PrefillMs : 0;

    /// <summary>Tokens per second of decode: (GeneratedTokens − 1) / DecodeMs × 1000, since the
    /// first token comes from the prefill (0 when there was no decode step).</summary>
    public double DecodeTokensPerSecond => DecodeMs > 0 && GeneratedTokens.Count > 1
        ? (GeneratedTokens.Count - 1) * 1000.0 / DecodeMs
        : 0;
}

/// <summary>An expected failure of a generation (DESIGN.md §3 error codes).</summary>
/// <param name="Code"><see cref="PromptTooLong"/>, <see cref="Canceled"/> or <see cref="ModelError"/>.</param>
/// <param name="Message">Human-readable detail, with the numbers involved.</param>
public sealed record GenerationError(string Code, string Message)
{
    /// <summary>Prompt tokens + max_new_tokens exceed the model's n_positions.</summary>
    public const string PromptTooLong = "prompt_too_long";

    /// <summary>The caller's cancellation token fired.</summary>
    public const string Canceled = "canceled";

    /// <summary>ONNX Runtime failed while running the model.</summary>
    public const string ModelError = "model_error";
}

/// <summary>The outcome of <see cref="Gpt2Generator.Generate"/>: exactly one of Result and Error is set.</summary>
public sealed record GenerationOutcome(GenerationResult? Result, GenerationError? Error)
{
    /// <summary>The result; null when the generation failed.</summary>
    public GenerationResult? Result { get; } =
        (Result is null) == (Error is null) ? throw new ArgumentException("exactly one of Result and Error must be set") : Result;

    /// <summary>True when <see cref="Result"/> is set.</summary>
    [System.Diagnostics.CodeAnalysis.MemberNotNullWhen(true, nameof(Result))]
    [System.Diagnostics.CodeAnalysis.MemberNotNullWhen(false, nameof(Error))]
    public bool Succeeded => Result is not null;

    public static GenerationOutcome Success(GenerationResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return new GenerationOutcome(result, null);
    }

    public static GenerationOutcome Failure(GenerationError error)
    {
        ArgumentNullException.ThrowIfNull(error);
        return new GenerationOutcome(null, error);
    }
}
