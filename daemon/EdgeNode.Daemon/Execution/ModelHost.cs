using EdgeNode.Daemon.Hosting;
using EdgeNode.Daemon.Options;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Execution;

/// <summary>What a model reload asks for: a default file and/or a file per execution provider.</summary>
/// <param name="Path">The default model file (used by every provider without an entry in <paramref name="Paths"/>);
/// null keeps the current one (<c>Inference:ModelPath</c>, or the demonstration model when none is configured).</param>
/// <param name="Paths">A file per provider (<c>Inference:ModelPaths</c>, e.g. <c>{"CUDA": "/models/fp16.onnx"}</c>);
/// null keeps the current map, an empty map clears it.</param>
internal sealed record ModelReloadRequest(string? Path, IReadOnlyDictionary<string, string>? Paths);

/// <summary>How a reload ended.</summary>
internal enum ModelReloadStatus
{
    /// <summary>The new model serves from the next job on; the old one was released.</summary>
    Swapped,

    /// <summary>The request named the files already serving: nothing was loaded.</summary>
    Unchanged,

    /// <summary>A path or the model was refused (missing file, unknown provider, not a GPT-2 signature); the old model still serves.</summary>
    Invalid,

    /// <summary>Another reload is running; nothing was done.</summary>
    Busy,
}

/// <summary>The outcome of <see cref="ModelHost.ReloadAsync"/> (an expected failure is a value, not an exception).</summary>
/// <param name="Status">What happened.</param>
/// <param name="Model">The model serving after the call.</param>
/// <param name="PreviousPath">The file that served before the call.</param>
/// <param name="Error">Why the request was refused (<see cref="ModelReloadStatus.Invalid"/>, <see cref="ModelReloadStatus.Busy"/>), naming the problem.</param>
internal sealed record ModelReloadOutcome(ModelReloadStatus Status, ModelInfo Model, string PreviousPath, string? Error);

/// <summary>
/// Owns the loaded GPT-2 model. Start-up step "load model": the configured <c>Inference:ModelPath</c>,
/// or, when none is configured, the tiny INT8 demonstration model synthesized into
/// <c>{state}/models/</c> on first run (DESIGN.md §2), on the first usable provider of
/// <c>Inference:ExecutionProviders</c> (stage "building TensorRT engine" while TensorRT is attempted, so /readyz
/// says why the node is not ready yet). A model that cannot be loaded fails the start.
/// <para>
/// Live reload (<see cref="ReloadAsync"/>, used by the IoT Hub method <c>reloadModel</c> and the desired properties
/// <c>modelPath</c> / <c>modelPaths</c>): the new file is loaded into a session of its own and its signature checked
/// (DESIGN.md §2) while the old model keeps serving; the swap happens between jobs (a job holds
/// <see cref="LeaseAsync"/> from its first to its last token and its outcome record), never in the middle of one.
/// </para>
/// </summary>
internal sealed class ModelHost(
    IOptions<InferenceOptions> options,
    IOptions<NodeOptions> node,
    NodeState state,
    ILogger<ModelHost> logger) : IHostedService, IDisposable
{
    private readonly SemaphoreSlim _jobGate = new(1, 1);
    private Gpt2Model? _model;
    private string _defaultPath = "";
    private IReadOnlyDictionary<string, string> _paths = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
    private int _reloading;

    /// <summary>The generator over the loaded model (one job at a time). Read it while holding <see cref="LeaseAsync"/>.</summary>
    /// <exception cref="InvalidOperationException">Before the model is loaded.</exception>
    public Gpt2Generator Generator { get; private set; } = null!;

    public ModelInfo Info => _model?.Info ?? throw new InvalidOperationException("model not loaded");

    /// <summary>True while a reload is loading or waiting for the running job to finish.</summary>
    public bool Reloading => Volatile.Read(ref _reloading) != 0;

    /// <summary>The default model file loaded at start (the configured one, or the demonstration model).</summary>
    public string StartPath { get; private set; } = "";

    /// <summary>The per-provider files configured at start (<c>Inference:ModelPaths</c>).</summary>
    public IReadOnlyDictionary<string, string> StartPaths { get; private set; } = new Dictionary<string, string>();

    /// <summary>Model swaps since start.</summary>
    public int Swaps { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var path = ConfiguredDefaultPath();
        state.StartupStage = "loading model";
        var settings = options.Value.ToSettings(node.Value.ResolveStateDirectory(), stage => state.StartupStage = stage);
        _model = Gpt2Model.Load(path, settings, logger);
        _defaultPath = path;
        _paths = new Dictionary<string, string>(options.Value.ModelPaths ?? [], StringComparer.OrdinalIgnoreCase);
        StartPath = path;
        StartPaths = _paths;
        Generator = new Gpt2Generator(_model, Gpt2Tokenizer.Shared);
        state.Model = _model.Info;
        Log.NativeHeapTrimmed(logger, "model load", NativeHeap.Trim());
        state.StartupStage = "connecting to broker";
        return Task.CompletedTask;
    }

    /// <summary>
    /// Holds the current model for one job: a reload waits until the lease is released before it swaps.
    /// Dispose the result to release it.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    public async Task<IDisposable> LeaseAsync(CancellationToken cancellationToken)
    {
        await _jobGate.WaitAsync(cancellationToken);
        return new Lease(_jobGate);
    }

    /// <summary>
    /// Loads the files named by <paramref name="request"/> into a new session (validating the GPT-2 signature,
    /// DESIGN.md §2) while the current model keeps serving, then waits for the running job to finish and swaps.
    /// At most one reload runs at a time: a second call meanwhile returns <see cref="ModelReloadStatus.Busy"/> at once
    /// (the check happens before the first await). On success <c>Inference:ModelPath</c> / <c>ModelPaths</c> (the
    /// options instance) follow the new files, so a later reload without paths loads them again.
    /// </summary>
    /// <param name="request">Files to load (null members keep the current ones).</param>
    /// <param name="cancellationToken">Stops waiting for the running job; the loaded candidate is released and the old model kept.</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled.</exception>
    public async Task<ModelReloadOutcome> ReloadAsync(ModelReloadRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var previous = _model?.Info ?? throw new InvalidOperationException("model not loaded");
        if (Interlocked.CompareExchange(ref _reloading, 1, 0) != 0)
        {
            return new ModelReloadOutcome(ModelReloadStatus.Busy, previous, previous.Path, "a model reload is already running");
        }

        try
        {
            var path = string.IsNullOrWhiteSpace(request.Path) ? _defaultPath : Path.GetFullPath(request.Path);
            var paths = request.Paths ?? _paths;
            if (Problems(path, paths) is { } problem)
            {
                Log.ModelReloadRefused(logger, problem);
                return new ModelReloadOutcome(ModelReloadStatus.Invalid, previous, previous.Path, problem);
            }

            if ((request.Path is not null || request.Paths is not null) && path == _defaultPath && SameMap(paths, _paths))
            {
                return new ModelReloadOutcome(ModelReloadStatus.Unchanged, previous, previous.Path, null);
            }

            Log.ModelReloading(logger, path);
            Gpt2Model candidate;
            try
            {
                var settings = options.Value.ToSettings(node.Value.ResolveStateDirectory(), onStage: null, paths);
                candidate = await Task.Run(() => Gpt2Model.Load(path, settings, logger), CancellationToken.None);
            }
            catch (Exception ex) when (ex is ModelLoadException or ArgumentException or IOException or UnauthorizedAccessException)
            {
                Log.ModelReloadRefused(logger, ex.Message);
                return new ModelReloadOutcome(ModelReloadStatus.Invalid, previous, previous.Path, ex.Message);
            }

            Gpt2Model old;
            try
            {
                await _jobGate.WaitAsync(cancellationToken); // between jobs: the running one finishes on the old model
            }
            catch (OperationCanceledException)
            {
                candidate.Dispose();
                throw;
            }

            try
            {
                old = _model!;
                _model = candidate;
                Generator = new Gpt2Generator(candidate, Gpt2Tokenizer.Shared);
                _defaultPath = path;
                _paths = new Dictionary<string, string>(paths, StringComparer.OrdinalIgnoreCase);
                options.Value.ModelPath = path;
                options.Value.ModelPaths = new Dictionary<string, string>(paths, StringComparer.OrdinalIgnoreCase);
                state.Model = candidate.Info;
                Swaps++;
            }
            finally
            {
                _jobGate.Release();
            }

            old.Dispose();
            Log.NativeHeapTrimmed(logger, "model swap", NativeHeap.Trim());
            Log.ModelSwapped(logger, previous.Path, candidate.Info.Path, candidate.Info.ExecutionProvider, candidate.Info.Precision);
            return new ModelReloadOutcome(ModelReloadStatus.Swapped, candidate.Info, previous.Path, null);
        }
        finally
        {
            Volatile.Write(ref _reloading, 0);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        _model?.Dispose();
        _jobGate.Dispose();
    }

    private string ConfiguredDefaultPath()
    {
        var path = options.Value.ModelPath;
        if (!string.IsNullOrWhiteSpace(path))
        {
            return Path.GetFullPath(path);
        }

        path = Path.Combine(node.Value.ResolveStateDirectory(), "models", DemonstrationModel.FileName);
        if (!File.Exists(path))
        {
            state.StartupStage = "synthesizing demonstration model";
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            ModelSynthesizer.WriteFile(DemonstrationModel.Options, path);
        }

        Log.DemoModel(logger, path);
        return path;
    }

    /// <summary>Names the first problem of the requested files (missing file, unknown provider), or null.</summary>
    private static string? Problems(string path, IReadOnlyDictionary<string, string> paths)
    {
        if (!File.Exists(path))
        {
            return "model file '" + path + "' does not exist";
        }

        foreach (var (provider, file) in paths)
        {
            if (ExecutionProviderNames.Normalize(provider) is null)
            {
                return "'" + provider + "' is not an execution provider (known: " + string.Join(", ", ExecutionProviderNames.All) + ")";
            }

            if (string.IsNullOrWhiteSpace(file) || !File.Exists(file))
            {
                return "model file '" + file + "' for " + provider + " does not exist";
            }
        }

        return null;
    }

    private static bool SameMap(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && string.Equals(Path.GetFullPath(v), Path.GetFullPath(kv.Value), StringComparison.Ordinal));

    private sealed class Lease(SemaphoreSlim gate) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                gate.Release();
            }
        }
    }
}
