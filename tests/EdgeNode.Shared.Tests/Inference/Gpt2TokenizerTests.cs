using EdgeNode.Shared.Inference;

namespace EdgeNode.Shared.Tests.Inference;

public sealed class Gpt2TokenizerTests
{
    [Fact]
    public void Encode_HelloMyNameIs_GivesGpt2Ids()
    {
        Assert.Equal([15496, 11, 616, 1438, 318], Gpt2Tokenizer.Shared.Encode("Hello, my name is"));
    }

    [Fact]
    public void CountTokens_MatchesEncode()
    {
        const string text = "Edge boards run GPT-2 with ONNX Runtime. 😀 日本語";

        Assert.Equal(Gpt2Tokenizer.Shared.Encode(text).Count, Gpt2Tokenizer.Shared.CountTokens(text));
    }

    [Theory]
    [InlineData("Hello, my name is")]
    [InlineData("  leading spaces and\ttabs\n\nnew lines")]
    [InlineData("emoji 😀 and CJK 日本語 split across byte-level tokens")]
    public void Decode_EncodedText_RoundTrips(string text)
    {
        Assert.Equal(text, Gpt2Tokenizer.Shared.Decode(Gpt2Tokenizer.Shared.Encode(text)));
    }

    [Fact]
    public void Encode_EndOfTextLiteral_IsTheSpecialToken()
    {
        Assert.Equal([Gpt2Tokenizer.EndOfText], Gpt2Tokenizer.Shared.Encode("<|endoftext|>"));
    }

    [Fact]
    public void Shared_FromManyThreads_IsOneInstanceThatEncodesConsistently()
    {
        var results = new int[8][];
        var instances = new Gpt2Tokenizer[8];
        Parallel.For(0, 8, i =>
        {
            instances[i] = Gpt2Tokenizer.Shared;
            results[i] = [.. instances[i].Encode("Hello, my name is")];
        });

        Assert.All(instances, t => Assert.Same(Gpt2Tokenizer.Shared, t));
        Assert.All(results, r => Assert.Equal([15496, 11, 616, 1438, 318], r));
    }
}
