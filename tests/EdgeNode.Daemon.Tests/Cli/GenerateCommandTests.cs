using System.CommandLine;
using System.Text.Json;
using EdgeNode.Daemon.Cli;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Daemon.Tests.Cli;

/// <summary>A synthesized tiny FP32 GPT-2 in a temp directory, shared by the class's tests.</summary>
public sealed class TinyModelFile : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("edgenode-cli-");

    public TinyModelFile()
    {
        Path = System.IO.Path.Combine(_directory.FullName, "model.onnx");
        ModelSynthesizer.WriteFile(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Fp32, QuantizeLmHead: false, Seed: 42), Path);
    }

    public string Path { get; }

    public string Missing => System.IO.Path.Combine(_directory.FullName, "absent.onnx");

    public void Dispose() => _directory.Delete(recursive: true);
}

[Collection(OnnxCollectionDefinition.Name)]
public sealed class GenerateCommandTests(TinyModelFile model) : IClassFixture<TinyModelFile>
{
    [Fact]
    public void Invoke_Json_PrintsOneObjectWithTokensTextAndTimings()
    {
        var (exitCode, stdout, stderr) = Invoke("--model", model.Path, "--greedy", "--max-new-tokens", "6", "--threads", "1", "--json", "Hello, my name is");

        Assert.Equal(0, exitCode);
        Assert.Equal(string.Empty, stderr);
        using var document = JsonDocument.Parse(stdout);
        var root = document.RootElement;
        Assert.Equal("Hello, my name is", root.GetProperty("prompt").GetString());
        Assert.Equal([15496, 11, 616, 1438, 318], root.GetProperty("prompt_token_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(6, root.GetProperty("token_ids").GetArrayLength());
        Assert.Equal("length", root.GetProperty("finish_reason").GetString());
        Assert.Equal("CPU", root.GetProperty("execution_provider").GetString());
        Assert.False(string.IsNullOrEmpty(root.GetProperty("text").GetString()));
        var timings = root.GetProperty("timings");
        foreach (string name in new[] { "prefill_ms", "decode_ms", "prefill_tokens_per_s", "decode_tokens_per_s" })
        {
            Assert.True(timings.GetProperty(name).GetDouble() > 0, name);
        }
    }

    [Fact]
    public void Invoke_Plain_PrintsTheSameTextAsJson()
    {
        var (_, json, _) = Invoke("--model", model.Path, "--seed", "5", "--max-new-tokens", "8", "--threads", "1", "--json", "Once upon a time");
        var (exitCode, plain, _) = Invoke("--model", model.Path, "--seed", "5", "--max-new-tokens", "8", "--threads", "1", "Once upon a time");

        Assert.Equal(0, exitCode);
        using var document = JsonDocument.Parse(json);
        Assert.Equal(document.RootElement.GetProperty("text").GetString() + Environment.NewLine, plain);
    }

    [Fact]
    public void Invoke_MissingModelFile_ExitsOneNamingTheFile()
    {
        var (exitCode, stdout, stderr) = Invoke("--model", model.Missing, "Hello");

        Assert.Equal(1, exitCode);
        Assert.Equal(string.Empty, stdout);
        Assert.Contains($"model file '{model.Missing}' does not exist", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Invoke_PromptTooLong_ExitsOneWithTheNumbers()
    {
        string prompt = "hello" + string.Concat(Enumerable.Repeat(" hello", 999));

        var (exitCode, _, stderr) = Invoke("--model", model.Path, "--max-new-tokens", "100", "--threads", "1", prompt);

        Assert.Equal(1, exitCode);
        Assert.Contains("prompt_too_long: prompt of 1000 tokens + max_new_tokens 100 = 1100 tokens", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--top-p", "1.5", "--top-p must be in (0, 1]")]
    [InlineData("--max-new-tokens", "0", "--max-new-tokens must be at least 1")]
    [InlineData("--temperature", "-1", "--temperature must be a finite number >= 0")]
    [InlineData("--threads", "0", "--threads must be at least 1")]
    public void Invoke_OptionOutOfRange_ExitsTwoNamingTheOption(string option, string value, string message)
    {
        var (exitCode, _, stderr) = Invoke("--model", model.Path, option, value, "Hello");

        Assert.Equal(2, exitCode);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Invoke_EmptyPrompt_ExitsTwo_AsAJobWouldBeRejected()
    {
        var (exitCode, stdout, stderr) = Invoke("--model", model.Path, "");

        Assert.Equal(2, exitCode);
        Assert.Empty(stdout);
        Assert.Contains("prompt must not be empty", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Invoke_NoModelOption_ExitsTwo()
    {
        var (exitCode, _, stderr) = Invoke("Hello");

        Assert.Equal(2, exitCode);
        Assert.Contains("--model FILE is required", stderr, StringComparison.Ordinal);
    }

    private static (int ExitCode, string Stdout, string Stderr) Invoke(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int exitCode = GenerateCommand.Create().Parse(args).Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
        return (exitCode, stdout.ToString(), stderr.ToString());
    }
}
