using EdgeNode.Shared.Inference;

namespace EdgeNode.Daemon.Hosting;

/// <summary>
/// What the node knows about itself right now: readiness inputs (store open, model loaded, broker
/// connected) for <c>/readyz</c> and, later, the status topic and systemd notifications.
/// Thread-safe: fields are written by one owner each and read by anyone.
/// </summary>
internal sealed class NodeState
{
    private volatile ModelInfo? _model;
    private volatile bool _storeOpen;
    private volatile bool _brokerConnected;
    private volatile string _startupStage = "starting";
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ModelInfo? Model { get => _model; set => _model = value; }

    public bool StoreOpen { get => _storeOpen; set => _storeOpen = value; }

    public bool BrokerConnected
    {
        get => _brokerConnected;
        set
        {
            _brokerConnected = value;
            if (IsReady)
            {
                _ready.TrySetResult();
            }
        }
    }

    /// <summary>Completes the first time the node becomes ready.</summary>
    public Task WhenReadyAsync(CancellationToken cancellationToken) => _ready.Task.WaitAsync(cancellationToken);

    /// <summary>Where a corrupt job database was last moved, at start or while running (null while it was always readable).</summary>
    public string? StoreQuarantinedTo { get; set; }

    /// <summary>A human-readable stage while starting, e.g. "loading model".</summary>
    public string StartupStage { get => _startupStage; set => _startupStage = value; }

    /// <summary>Ready to take jobs: store open, model loaded, broker connected.</summary>
    public bool IsReady => _storeOpen && _model is not null && _brokerConnected;

    /// <summary>Reasons the node is not ready (empty when ready).</summary>
    public IReadOnlyList<string> NotReadyReasons()
    {
        var reasons = new List<string>(3);
        if (!_storeOpen)
        {
            reasons.Add("job store not open");
        }

        if (_model is null)
        {
            reasons.Add("model not loaded (" + _startupStage + ")");
        }

        if (!_brokerConnected)
        {
            reasons.Add("broker not connected");
        }

        return reasons;
    }
}
