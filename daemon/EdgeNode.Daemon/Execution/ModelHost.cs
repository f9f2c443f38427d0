using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Execution;

/// <summary>
/// Owns the loaded GPT-2 model. Start-up step "load model": the configured <c>Inference:ModelPath</c>,
/// or, when none is configured, the tiny INT8 demonstration model synthesized into
/// <c>{state}/models/</c> on first run (DESIGN.md §2), on the first usable provider of
/// <c>Inference:ExecutionProviders</c> (stage "building TensorRT engine" while TensorRT is attempted, so /readyz
/// says why the node is not ready yet). A model that cannot be loaded fails the start.
/// </summary>
internal sealed class ModelHost(
    IOptions<InferenceOptions> options,
    IOptions<NodeOptions> node,
    NodeState state,
    ILogger<ModelHost> logger) : IHostedService, IDisposable
{
    /// <summary>Seed of the demonstration model; fixed so every node synthesizes the same bytes.</summary>
    public const ulong DemoSeed = 42;

    private Gpt2Model? _model;

    /// <summary>The generator over the loaded model (one job at a time).</summary>
    /// <exception cref="InvalidOperationException">Before the model is loaded.</exception>
    public Gpt2Generator Generator { get; private set; } = null!;

    public ModelInfo Info => _model?.Info ?? throw new InvalidOperationException("model not loaded");

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var path = options.Value.ModelPath;
        if (string.IsNullOrWhiteSpace(path))
        {
            path = Path.Combine(node.Value.ResolveStateDirectory(), "models", "tiny-int8.onnx");
            if (!File.Exists(path))
            {
                state.StartupStage = "synthesizing demonstration model";
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                ModelSynthesizer.WriteFile(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, QuantizeLmHead: false, DemoSeed), path);
            }

            Log.DemoModel(logger, path);
        }

        state.StartupStage = "loading model";
        var settings = options.Value.ToSettings(node.Value.ResolveStateDirectory(), stage => state.StartupStage = stage);
        _model = Gpt2Model.Load(path, settings, logger);
        Generator = new Gpt2Generator(_model, Gpt2Tokenizer.Shared);
        state.Model = _model.Info;
        state.StartupStage = "connecting to broker";
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _model?.Dispose();
}
