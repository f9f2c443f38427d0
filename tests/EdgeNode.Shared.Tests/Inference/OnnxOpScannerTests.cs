using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Shared.Tests.Inference;

public sealed class OnnxOpScannerTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("edgenode-opscan-");

    public void Dispose() => _directory.Delete(recursive: true);

    [Fact]
    public void ReadOpTypes_Fp32Model_HasMatMulAndNoQuantizedOps()
    {
        string path = Write(ModelPrecision.Fp32, "fp32.onnx");

        var ops = OnnxOpScanner.ReadOpTypes(path);

        Assert.Contains("MatMul", ops);
        Assert.Contains("LayerNormalization", ops);
        Assert.DoesNotContain("MatMulInteger", ops);
        Assert.Equal("fp32", OnnxOpScanner.DetectPrecision(path));
    }

    [Fact]
    public void ReadOpTypes_Int8Model_HasQOperatorPattern()
    {
        string path = Write(ModelPrecision.Int8, "int8.onnx");

        var ops = OnnxOpScanner.ReadOpTypes(path);

        Assert.Contains("DynamicQuantizeLinear", ops);
        Assert.Contains("MatMulInteger", ops);
        Assert.Equal("int8", OnnxOpScanner.DetectPrecision(path));
    }

    [Fact]
    public void ReadOpTypes_TruncatedFile_ThrowsInvalidData()
    {
        string path = Write(ModelPrecision.Fp32, "whole.onnx");
        var bytes = File.ReadAllBytes(path);
        string truncated = Path.Combine(_directory.FullName, "truncated.onnx");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 3)]);

        Assert.Throws<InvalidDataException>(() => OnnxOpScanner.ReadOpTypes(truncated));
    }

    private string Write(ModelPrecision precision, string name)
    {
        string path = Path.Combine(_directory.FullName, name);
        ModelSynthesizer.WriteFile(TinyModelFixture.Options with { Precision = precision }, path);
        return path;
    }
}
