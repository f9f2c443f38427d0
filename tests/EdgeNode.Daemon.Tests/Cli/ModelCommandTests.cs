using System.CommandLine;
using System.Security.Cryptography;
using EdgeNode.Daemon.Cli;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Daemon.Tests.Cli;

public sealed class ModelCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("edgenode-model-cli-").FullName;

    [Fact]
    public void Synth_ValidArguments_WritesModelAndPrintsPathSizeAndSha256()
    {
        string path = Path.Combine(_directory, "out", "tiny-int8.onnx");

        (int exitCode, string stdout, string stderr) = Invoke("model", "synth", "--preset", "tiny", "--precision", "int8", "--seed", "42", "--out", path);

        Assert.True(exitCode == 0, stderr);
        byte[] written = File.ReadAllBytes(path);
        Assert.Equal(ModelSynthesizer.Synthesize(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: false, Seed: 42)), written);
        Assert.Equal(
            [$"path: {path}", $"size: {written.Length} bytes", $"sha256: {Convert.ToHexStringLower(SHA256.HashData(written))}"],
            stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public void Synth_LayoutMerged_WritesALegacyMergedDecoderThatInspectDetects()
    {
        string path = Path.Combine(_directory, "merged.onnx");

        (int exitCode, _, string stderr) = Invoke("model", "synth", "--preset", "tiny", "--precision", "fp32", "--seed", "42", "--layout", "merged", "--out", path);
        (int inspectExit, string text, string inspectErr) = Invoke("model", "inspect", path);

        Assert.True(exitCode == 0, stderr);
        Assert.True(inspectExit == 0, inspectErr);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains("variant: merged-legacy", lines);
        Assert.Contains("precision: fp32", lines);
        Assert.Contains("config: n_layer 2, n_head 2, head_dim 32, n_embd 64, vocab 50257, n_positions 1024", lines);
        Assert.Contains("use_cache_branch: bool [1]", lines);
        Assert.DoesNotContain(lines, l => l.StartsWith("position_ids", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("execution providers: TensorRT, CUDA, CPU", StringComparison.Ordinal));
    }

    [Fact]
    public void Inspect_Json_DynamicInt8IsCpuOnly()
    {
        string path = Path.Combine(_directory, "int8.onnx");
        ModelSynthesizer.WriteFile(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: false, Seed: 42, ModelLayout.NoPositionIds), path);

        (int exitCode, string stdout, string stderr) = Invoke("model", "inspect", path, "--json");

        Assert.True(exitCode == 0, stderr);
        using var json = System.Text.Json.JsonDocument.Parse(stdout);
        var root = json.RootElement;
        Assert.Equal("no-position-ids", root.GetProperty("variant").GetString());
        Assert.Equal("int8", root.GetProperty("precision").GetString());
        Assert.True(root.GetProperty("dynamic_int8").GetBoolean());
        Assert.Equal(2, root.GetProperty("config").GetProperty("n_layer").GetInt32());
        Assert.Equal(["CPU"], root.GetProperty("execution_providers").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(6, root.GetProperty("inputs").GetArrayLength()); // input_ids, attention_mask, 4 past
    }

    [Fact]
    public void Inspect_NotAModel_Exits1NamingTheProblem()
    {
        string path = Path.Combine(_directory, "text.onnx");
        File.WriteAllText(path, "not a model");

        (int exitCode, _, string stderr) = Invoke("model", "inspect", path);

        Assert.Equal(1, exitCode);
        Assert.Contains("is not an ONNX model that ONNX Runtime can load", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Synth_QuantizeLmHeadFlag_WritesModelWithQuantizedLmHead()
    {
        string path = Path.Combine(_directory, "tiny-int8-lm.onnx");

        (int exitCode, _, string stderr) = Invoke("model", "synth", "--preset", "TINY", "--precision", "Int8", "--quantize-lm-head", "--seed", "7", "--out", path);

        Assert.True(exitCode == 0, stderr);
        Assert.Equal(ModelSynthesizer.Synthesize(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: true, Seed: 7)), File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData("--preset huge", "--preset must be tiny or small, got 'huge'")]
    [InlineData("--precision fp16", "--precision must be fp32 or int8, got 'fp16'")]
    [InlineData("--seed -1", "--seed must be an unsigned 64-bit integer")]
    [InlineData("--seed 18446744073709551616", "--seed must be an unsigned 64-bit integer")]
    [InlineData("--seed abc", "--seed must be an unsigned 64-bit integer")]
    [InlineData("--precision fp32 --quantize-lm-head", "--quantize-lm-head requires --precision int8")]
    [InlineData("--bogus", "unexpected argument '--bogus'")]
    [InlineData("extra", "unexpected argument 'extra'")]
    public void Synth_BadArgument_ExitCode2NamingTheOptionAndRule(string change, string expectedError)
    {
        string path = Path.Combine(_directory, "bad.onnx");
        List<string> args = WithChange(["model", "synth", "--preset", "tiny", "--precision", "int8", "--seed", "1", "--out", path], change.Split(' '));

        (int exitCode, string stdout, string stderr) = Invoke([.. args]);

        Assert.Equal(ModelCommand.BadArguments, exitCode);
        Assert.Contains(expectedError, stderr, StringComparison.Ordinal);
        Assert.Equal(string.Empty, stdout);
        Assert.False(File.Exists(path));
    }

    [Theory]
    [InlineData("--preset", "--preset is required (tiny or small)")]
    [InlineData("--precision", "--precision is required (fp32 or int8)")]
    [InlineData("--seed", "--seed is required")]
    [InlineData("--out", "--out is required")]
    public void Synth_MissingOptionOrValue_ExitCode2NamingTheOption(string option, string expectedError)
    {
        string path = Path.Combine(_directory, "missing.onnx");
        var full = new Dictionary<string, string> { ["--preset"] = "tiny", ["--precision"] = "fp32", ["--seed"] = "1", ["--out"] = path };

        // Once without the option, once with the option but no value (last on the line).
        List<string> without = ["model", "synth", .. full.Where(p => p.Key != option).SelectMany(p => new[] { p.Key, p.Value })];
        (int exitWithout, _, string stderrWithout) = Invoke([.. without]);
        (int exitNoValue, _, string stderrNoValue) = Invoke([.. without, option]);

        Assert.Equal(ModelCommand.BadArguments, exitWithout);
        Assert.Contains(expectedError, stderrWithout, StringComparison.Ordinal);
        Assert.Equal(ModelCommand.BadArguments, exitNoValue);
        Assert.Contains(expectedError, stderrNoValue, StringComparison.Ordinal);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Synth_OutIsADirectory_ExitCode2()
    {
        (int exitCode, _, string stderr) = Invoke("model", "synth", "--preset", "tiny", "--precision", "fp32", "--seed", "1", "--out", _directory);

        Assert.Equal(ModelCommand.BadArguments, exitCode);
        Assert.Contains("--out must be a file path", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Model_NoSubcommand_ExitCode2NamingSynth()
    {
        (int exitCode, _, string stderr) = Invoke("model");

        Assert.Equal(ModelCommand.BadArguments, exitCode);
        Assert.Contains("synth", stderr, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static (int ExitCode, string Stdout, string Stderr) Invoke(params string[] args)
    {
        var root = new RootCommand("test root") { ModelCommand.Create() };
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int exitCode = root.Parse(args).Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
        return (exitCode, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Replaces the value of the option <c>change[0]</c> with <c>change[1]</c> and appends the rest; appends everything when the option is absent.</summary>
    private static List<string> WithChange(List<string> args, string[] change)
    {
        int index = args.IndexOf(change[0]);
        if (index < 0 || change.Length < 2)
        {
            args.AddRange(change);
            return args;
        }

        args[index + 1] = change[1];
        args.AddRange(change[2..]);
        return args;
    }
}
