using System.Text;
using EdgeNode.Shared.Inference;

namespace EdgeNode.Shared.Tests.Inference;

public sealed class GeneratedTextTests
{
    private static readonly Gpt2Tokenizer Tokenizer = Gpt2Tokenizer.Shared;

    [Fact]
    public void Release_EmojiAndCjkSplitAcrossTokens_NeverReleasesAReplacementCharacter()
    {
        // Generation case 5: "😀 日本" is 7 byte-level tokens; 😀, 日 and 本 each span two.
        const string expected = "😀 日本";
        var ids = Tokenizer.Encode(expected);
        Assert.True(ids.Count > expected.Length - 1, "the characters must be split across tokens");
        var text = new GeneratedText(Tokenizer, [], streaming: true);
        var pieces = new List<string>();

        for (int n = 1; n <= ids.Count; n++)
        {
            Assert.Equal(-1, text.Update(ids.Take(n)));
            pieces.Add(text.Release(n == ids.Count ? text.Text : null));
        }

        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.Contains(string.Empty, pieces);
        Assert.Equal(expected, string.Concat(pieces));
    }

    [Fact]
    public void Release_TextThatMayStartAStop_IsHeldUntilResolved()
    {
        var text = new GeneratedText(Tokenizer, ["\n\n"], streaming: true);
        var ids = new List<int>();
        var released = new StringBuilder();

        foreach (int id in Tokenizer.Encode("Hello world\n"))
        {
            ids.Add(id);
            Assert.Equal(-1, text.Update(ids));
            released.Append(text.Release(null));
        }

        Assert.Equal("Hello world", released.ToString()); // the "\n" may begin "\n\n"

        ids.AddRange(Tokenizer.Encode("\nBye"));
        int stop = text.Update(ids);

        Assert.Equal("Hello world".Length, stop);
        released.Append(text.Release(text.Text[..stop]));
        Assert.Equal("Hello world", released.ToString());
    }

    [Fact]
    public void Update_TwoStopSequences_ReturnsTheEarliest()
    {
        var text = new GeneratedText(Tokenizer, ["world", "lo"], streaming: false);

        Assert.Equal(3, text.Update(Tokenizer.Encode("Hello world")));
    }

    [Fact]
    public void IsTracking_NoStopsAndNoStreaming_IsFalse()
    {
        Assert.False(new GeneratedText(Tokenizer, ["", ""], streaming: false).IsTracking);
        Assert.True(new GeneratedText(Tokenizer, ["x"], streaming: false).IsTracking);
        Assert.True(new GeneratedText(Tokenizer, [], streaming: true).IsTracking);
    }
}
