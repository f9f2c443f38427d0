namespace EdgeNode.Shared.Inference;

/// <summary>
/// Follows the text of the tokens generated so far, for stop sequences and streaming.
/// After each token the whole generated id list is decoded again (at most n_positions ids, a
/// few microseconds, small next to a model step); this is exact where incremental decoding is
/// subtle, because GPT-2 splits multi-byte UTF-8 characters across tokens.
/// </summary>
/// <remarks>
/// Streaming rule (generation case 5): text is released only when it can no longer change or be
/// cut: trailing U+FFFD characters (bytes of a character whose remaining bytes may come with
/// the next token) and a trailing part that could begin a stop sequence are held back until
/// the next token or the end. Released pieces therefore concatenate to the final text.
/// </remarks>
internal sealed class GeneratedText
{
    private const char Replacement = '\uFFFD';

    private readonly Gpt2Tokenizer _tokenizer;
    private readonly string[] _stops;
    private readonly bool _streaming;
    private string _text = string.Empty;
    private int _released;

    public GeneratedText(Gpt2Tokenizer tokenizer, IReadOnlyList<string> stops, bool streaming)
    {
        _tokenizer = tokenizer;
        _stops = stops.Where(s => !string.IsNullOrEmpty(s)).Distinct(StringComparer.Ordinal).ToArray();
        _streaming = streaming;
    }

    /// <summary>True when the text must be followed token by token (stop sequences or streaming).</summary>
    public bool IsTracking => _stops.Length > 0 || _streaming;

    /// <summary>
    /// Decodes <paramref name="textTokens"/> (all generated ids that belong to the text) and looks
    /// for a stop sequence. Returns the index in the text where the earliest stop sequence
    /// begins, or -1.
    /// </summary>
    public int Update(IEnumerable<int> textTokens)
    {
        _text = _tokenizer.Decode(textTokens);
        int earliest = -1;
        foreach (string stop in _stops)
        {
            int index = _text.IndexOf(stop, StringComparison.Ordinal);
            if (index >= 0 && (earliest < 0 || index < earliest))
            {
                earliest = index;
            }
        }

        return earliest;
    }

    /// <summary>The text decoded by the last <see cref="Update"/>.</summary>
    public string Text => _text;

    /// <summary>
    /// The text released by this step (see remarks). With <paramref name="finalText"/> set, the
    /// generation is over and everything up to the end of the final text is released.
    /// </summary>
    public string Release(string? finalText)
    {
        string source = finalText ?? _text;
        int end = finalText is null ? StableLength() : finalText.Length;
        if (end <= _released)
        {
            return string.Empty;
        }

        string piece = source[_released..end];
        _released = end;
        return piece;
    }

    private int StableLength()
    {
        int end = _text.Length;
        while (end > _released && _text[end - 1] == Replacement)
        {
            end--;
        }

        int hold = 0;
        foreach (string stop in _stops)
        {
            // Longest suffix of text[..end] that is a proper prefix of this stop sequence.
            for (int length = Math.Min(stop.Length - 1, end); length > hold; length--)
            {
                if (_text.AsSpan(end - length, length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    hold = length;
                    break;
                }
            }
        }

        return Math.Max(_released, end - hold);
    }
}
