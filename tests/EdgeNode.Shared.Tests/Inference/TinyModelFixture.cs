using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Shared.Tests.Inference;

/// <summary>
/// One synthesized tiny GPT-2 (n_embd 64, 2 layers, 2 heads, FP32, seed 42) written to a temp
/// directory and loaded once per test class.
/// </summary>
public sealed class TinyModelFixture : IDisposable
{
    public TinyModelFixture()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("edgenode-inference-").FullName;
        ModelPath = System.IO.Path.Combine(Directory, "model.onnx");
        ModelSynthesizer.WriteFile(Options, ModelPath);
        Model = Gpt2Model.Load(ModelPath, new InferenceSettings { IntraOpThreads = 1 });
    }

    public static SynthesisOptions Options { get; } = new(ModelPreset.Tiny, ModelPrecision.Fp32, QuantizeLmHead: false, Seed: 42);

    public string Directory { get; }

    public string ModelPath { get; }

    internal Gpt2Model Model { get; }

    /// <summary>A path inside the fixture's temp directory (deleted with it).</summary>
    public string PathFor(string fileName) => System.IO.Path.Combine(Directory, fileName);

    public void Dispose()
    {
        Model.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
