using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Shared.Tests.Inference;

[Collection(OnnxCollectionDefinition.Name)]
public sealed class Gpt2ModelLoadTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private static readonly InferenceSettings Settings = new() { IntraOpThreads = 1 };

    [Fact]
    public void Load_TinyFp32_ReportsShapeFromSignatureAndConfig()
    {
        var info = fixture.Model.Info;

        Assert.Equal(Path.GetFullPath(fixture.ModelPath), info.Path);
        Assert.Equal(2, info.NLayer);
        Assert.Equal(2, info.NHead);
        Assert.Equal(32, info.HeadDim);
        Assert.Equal(64, info.NEmbd);
        Assert.Equal(50257, info.VocabSize);
        Assert.Equal(1024, info.NPositions);
        Assert.Equal("CPU", info.ExecutionProvider);
        Assert.Equal("fp32", info.Precision);
    }

    [Fact]
    public void Load_TinyInt8_ReportsInt8Precision()
    {
        string path = fixture.PathFor("int8.onnx");
        ModelSynthesizer.WriteFile(TinyModelFixture.Options with { Precision = ModelPrecision.Int8 }, path);

        using var model = Gpt2Model.Load(path, Settings);

        Assert.Equal("int8", model.Info.Precision);
        Assert.Equal(2, model.Info.NLayer);
    }

    [Fact]
    public void Load_MissingFile_ThrowsNamingThePath()
    {
        string path = fixture.PathFor("absent.onnx");

        var ex = Assert.Throws<ModelLoadException>(() => Gpt2Model.Load(path, Settings));

        Assert.Contains("does not exist", ex.Message, StringComparison.Ordinal);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_RandomBytes_ThrowsNotAnOnnxModel()
    {
        string path = fixture.PathFor("corrupt.onnx");
        var bytes = new byte[4096];
        new Random(1).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);

        var ex = Assert.Throws<ModelLoadException>(() => Gpt2Model.Load(path, Settings));

        Assert.Contains("is not an ONNX model that ONNX Runtime can load", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_TruncatedModel_ThrowsNotAnOnnxModel()
    {
        string path = fixture.PathFor("truncated.onnx");
        var bytes = File.ReadAllBytes(fixture.ModelPath);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);

        var ex = Assert.Throws<ModelLoadException>(() => Gpt2Model.Load(path, Settings));

        Assert.Contains("is not an ONNX model", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_PositionIdsRenamed_ThrowsNamingTheUnknownInput()
    {
        string path = fixture.PathFor("renamed-position-ids.onnx");
        File.WriteAllBytes(path, ModelSurgery.RenameInput(File.ReadAllBytes(fixture.ModelPath), "position_ids", "positions"));

        var ex = Assert.Throws<ModelLoadException>(() => Gpt2Model.Load(path, Settings));

        Assert.Equal(["model input 'positions' is not part of the GPT-2 signature (the generator cannot feed it)"], ex.Problems);
    }

    [Fact]
    public void Load_InputIdsRenamed_ThrowsNamingInputIds()
    {
        string path = fixture.PathFor("renamed-input-ids.onnx");
        File.WriteAllBytes(path, ModelSurgery.RenameInput(File.ReadAllBytes(fixture.ModelPath), "input_ids", "tokens"));

        var ex = Assert.Throws<ModelLoadException>(() => Gpt2Model.Load(path, Settings));

        Assert.Contains("model input 'input_ids' is missing", ex.Problems);
    }

    [Fact]
    public void Load_PresentOutputRemoved_ThrowsNamingTheOutput()
    {
        string path = fixture.PathFor("no-present-1-value.onnx");
        File.WriteAllBytes(path, ModelSurgery.RemoveOutput(File.ReadAllBytes(fixture.ModelPath), "present.1.value"));

        var ex = Assert.Throws<ModelLoadException>(() => Gpt2Model.Load(path, Settings));

        Assert.Equal(["model output 'present.1.value' is missing"], ex.Problems);
    }
}
