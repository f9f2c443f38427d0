using System.Threading.Channels;
using EdgeNode.CloudRelay.Options;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;
using EdgeNode.Shared.Jobs;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Backends;

/// <summary>
/// The embedded backend: the shared inference core (ONNX Runtime) with the relay's own model,
/// <c>Relay:Embedded:ModelPath</c>, or the demonstration model (<see cref="DemonstrationModel"/>) synthesized into
/// <c>{state}/models/</c> on first start (the same bytes as the daemon's). One ONNX
/// Runtime session per <c>Relay:MaxConcurrentJobs</c>, since a generator runs one job at a time.
/// </summary>
internal sealed class EmbeddedBackend(IOptions<RelayOptions> options, ILogger<EmbeddedBackend> logger) : IRelayBackend, IHostedService, IDisposable
{
    private readonly List<Gpt2Model> _models = [];
    private readonly Channel<Gpt2Generator> _pool = Channel.CreateUnbounded<Gpt2Generator>();
    private Gpt2Generator? _checker;
    private volatile string? _notReady = "model not loaded";

    public string Name => "embedded";

    public string? NotReadyReason => _notReady;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var relay = options.Value;
        var path = relay.Embedded.ModelPath;
        if (string.IsNullOrWhiteSpace(path))
        {
            path = Path.Combine(relay.ResolveStateDirectory(), "models", DemonstrationModel.FileName);
            if (!File.Exists(path))
            {
                _notReady = "synthesizing the demonstration model";
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                var temp = path + ".tmp";
                ModelSynthesizer.WriteFile(DemonstrationModel.Options, temp);
                File.Move(temp, path, overwrite: true);
            }
        }

        _notReady = "loading the model";
        var settings = new InferenceSettings { IntraOpThreads = relay.Embedded.IntraOpThreads };
        for (var i = 0; i < relay.MaxConcurrentJobs; i++)
        {
            var model = Gpt2Model.Load(path, settings, logger);
            _models.Add(model);
            var generator = new Gpt2Generator(model, Gpt2Tokenizer.Shared);
            _checker ??= generator;
            _pool.Writer.TryWrite(generator);
        }

        Log.ModelLoaded(logger, path, relay.MaxConcurrentJobs);
        _notReady = null;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public JobError? Check(JobRequest job)
    {
        if (_checker is null)
        {
            return null;
        }

        var error = _checker.CheckFits(Gpt2Tokenizer.Shared.CountTokens(job.Prompt), job.MaxNewTokens);
        return error is null ? null : new JobError(error.Code, error.Message);
    }

    public async Task<BackendResult> RunAsync(JobRequest job, Action<GeneratedToken>? onToken, CancellationToken cancellationToken)
    {
        var generator = await _pool.Reader.ReadAsync(cancellationToken);
        try
        {
            // CPU-bound: on the thread pool, so Kestrel's threads stay free.
            var outcome = await Task.Run(() => generator.Generate(job.Prompt, job.ToGenerationParameters(onToken), cancellationToken), CancellationToken.None);
            if (!outcome.Succeeded)
            {
                return BackendResult.Failed(outcome.Error);
            }

            var r = outcome.Result;
            return new BackendResult(BackendResultKind.Generated, r.Text, r.FinishReason.ToString().ToLowerInvariant(),
                r.PromptTokens.Count, r.GeneratedTokens.Count, r.PrefillMs, r.DecodeMs);
        }
        finally
        {
            _pool.Writer.TryWrite(generator);
        }
    }

    public void Dispose()
    {
        foreach (var model in _models)
        {
            model.Dispose();
        }
    }
}
