using System.Diagnostics;
using EdgeNode.Shared.Inference.Synthesis;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeNode.Shared.Tests.Inference.Synthesis;

/// <summary>
/// The synthesized files have exactly the Optimum (>= 1.14) model.onnx signature of DESIGN.md §2, as ONNX Runtime
/// reports it and as the team's python checker (tools/check_signature.py) sees it.
/// </summary>
[Collection(OnnxCollectionDefinition.Name)]
public sealed class ModelSignatureTests
{
    private const string Batch = "batch_size";
    private const string Sequence = "sequence_length";
    private const string Past = "past_sequence_length";
    private const string Total = "past_sequence_length + sequence_length";

    [Theory]
    [InlineData("fp32")]
    [InlineData("int8")]
    [InlineData("int8-lm-head")]
    public void InferenceSession_TinyModel_InputsAreOptimumSignatureInOrder(string variant)
    {
        using var session = new InferenceSession(TestModels.Get(TestModels.Tiny(variant)));

        Assert.Equal(
            ["input_ids", "attention_mask", "position_ids", "past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"],
            session.InputNames);
        AssertTensor(session.InputMetadata["input_ids"], TensorElementType.Int64, Batch, Sequence);
        AssertTensor(session.InputMetadata["attention_mask"], TensorElementType.Int64, Batch, Total);
        AssertTensor(session.InputMetadata["position_ids"], TensorElementType.Int64, Batch, Sequence);
        foreach (string name in session.InputNames.Where(n => n.StartsWith("past_key_values.", StringComparison.Ordinal)))
        {
            AssertTensor(session.InputMetadata[name], TensorElementType.Float, Batch, 2, Past, 32);
        }
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("int8")]
    [InlineData("int8-lm-head")]
    public void InferenceSession_TinyModel_OutputsAreOptimumSignatureInOrder(string variant)
    {
        using var session = new InferenceSession(TestModels.Get(TestModels.Tiny(variant)));

        Assert.Equal(["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"], session.OutputNames);
        AssertTensor(session.OutputMetadata["logits"], TensorElementType.Float, Batch, Sequence, 50257);
        foreach (string name in session.OutputNames.Skip(1))
        {
            AssertTensor(session.OutputMetadata[name], TensorElementType.Float, Batch, 2, Total, 32);
        }
    }

    [Theory]
    [InlineData("fp32", "int8=False")]
    [InlineData("int8", "int8=True")]
    [InlineData("int8-lm-head", "int8=True")]
    public async Task CheckSignatureScript_TinyModel_PrintsSignatureOk(string variant, string expectedKind)
    {
        string script = LocateCheckSignatureScript();
        await RequirePythonOnnxAsync();
        using var directory = new TemporaryDirectory();
        string path = directory.File($"tiny-{variant}.onnx");
        ModelSynthesizer.WriteFile(TestModels.Tiny(variant), path);

        (int exitCode, string stdout) = await RunAsync("/usr/bin/python3", script, path);

        Assert.True(exitCode == 0, $"check_signature.py exited {exitCode}: {stdout}");
        Assert.StartsWith("signature ok: L=2 H=2 E=64 V=50257", stdout, StringComparison.Ordinal);
        Assert.Contains(expectedKind, stdout, StringComparison.Ordinal);
        Assert.Contains("opset=17", stdout, StringComparison.Ordinal);
    }

    /// <summary>Each dim is a symbolic name (string) or a fixed size (int).</summary>
    private static void AssertTensor(NodeMetadata metadata, TensorElementType elementType, params object[] dims)
    {
        Assert.Equal(OnnxValueType.ONNX_TYPE_TENSOR, metadata.OnnxValueType);
        Assert.Equal(elementType, metadata.ElementDataType);
        Assert.Equal(dims.Length, metadata.Dimensions.Length);
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] is string symbol)
            {
                Assert.Equal(symbol, metadata.SymbolicDimensions[i]);
                Assert.Equal(-1, metadata.Dimensions[i]);
            }
            else
            {
                Assert.Equal(string.Empty, metadata.SymbolicDimensions[i]);
                Assert.Equal((int)dims[i], metadata.Dimensions[i]);
            }
        }
    }

    /// <summary>
    /// The checker lives beside the repository (../shared/tools relative to the directory holding EdgeNode.sln), in
    /// CI as on developer machines; tests do not depend on an absolute path.
    /// </summary>
    private static string LocateCheckSignatureScript()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "EdgeNode.sln")))
            {
                string script = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "tools", "check_signature.py"));
                Assert.True(File.Exists(script), $"check_signature.py not found at {script} (expected ../shared/tools beside the repository root {dir.FullName}).");
                return script;
            }
        }

        Assert.Fail($"No EdgeNode.sln above {AppContext.BaseDirectory}; cannot locate ../shared/tools/check_signature.py.");
        return string.Empty;
    }

    private static async Task RequirePythonOnnxAsync()
    {
        Assert.True(File.Exists("/usr/bin/python3"), "/usr/bin/python3 is missing: apt-get install -y python3 python3-onnx");
        (int exitCode, string output) = await RunAsync("/usr/bin/python3", "-c", "import onnx, numpy");
        Assert.True(exitCode == 0, $"python3-onnx is missing for /usr/bin/python3: apt-get install -y python3-onnx ({output.Trim()})");
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string fileName, params string[] arguments)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();

        // A hang guard, not a speed assertion: the checker takes well under a second on the tiny model.
        using var hang = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(hang.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}
