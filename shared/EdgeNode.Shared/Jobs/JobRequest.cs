namespace EdgeNode.Shared.Jobs;

/// <summary>
/// A validated generation request (DESIGN.md §3). Instances made by <see cref="JobParser"/> obey every
/// field rule listed there; the defaults below are the contract's defaults for absent fields.
/// </summary>
public sealed record JobRequest
{
    /// <summary>
    /// The idempotency key: from the payload's <c>id</c>, or assigned by the node (then
    /// <see cref="IdAssigned"/> is true). Non-empty, at most 128 UTF-8 bytes, no <c>/</c>, <c>+</c>,
    /// <c>#</c>, NUL or control characters, because it is used in topic names.
    /// </summary>
    public required string Id { get; init; }

    /// <summary>True when the payload had no <c>id</c> and the node assigned <see cref="Id"/>.</summary>
    public bool IdAssigned { get; init; }

    /// <summary>The prompt text (non-empty). Its GPT-2 token count is checked by the daemon, not here.</summary>
    public required string Prompt { get; init; }

    /// <summary>Tokens to generate, 1..<see cref="JobLimits.MaxNewTokensLimit"/>.</summary>
    public int MaxNewTokens { get; init; } = 32;

    /// <summary>Softmax temperature, 0..100; 0 means greedy decoding.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Top-k sampling cut-off, &gt;= 0; 0 disables it.</summary>
    public int TopK { get; init; } = 40;

    /// <summary>Nucleus (top-p) sampling mass, in (0, 1]; 1 disables it.</summary>
    public float TopP { get; init; } = 0.95f;

    /// <summary>Repetition penalty (CTRL, Keskar et al. 2019), in (0, 10]; 1 disables it.</summary>
    public float RepetitionPenalty { get; init; } = 1.0f;

    /// <summary>Sampling seed; null means the node picks one.</summary>
    public long? Seed { get; init; }

    /// <summary>At most 8 non-empty stop sequences; generation ends before the first one produced.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>True to publish a <c>token</c> event per generated token before the <c>result</c>.</summary>
    public bool Stream { get; init; }

    /// <summary>Deadline in ms, wall-clock from acceptance; an expired job is never executed.</summary>
    public int? DeadlineMs { get; init; }

    /// <summary>Priority, -100..100; higher runs first, FIFO within a priority.</summary>
    public int Priority { get; init; }

    /// <summary>The request's <c>reply_to</c> topic, used when the message had no MQTT 5 Response Topic.</summary>
    public string? ReplyTo { get; init; }

    /// <summary>
    /// The inference core's parameters for this request (DESIGN.md §3 sampling fields; temperature 0 is greedy).
    /// One mapping for the daemon's executor and the relay's embedded backend.
    /// </summary>
    /// <param name="onToken">Per-token callback (streaming, liveness), or null.</param>
    public EdgeNode.Shared.Inference.GenerationParameters ToGenerationParameters(Action<EdgeNode.Shared.Inference.GeneratedToken>? onToken = null) => new()
    {
        MaxNewTokens = MaxNewTokens,
        Temperature = Temperature,
        TopK = TopK,
        TopP = TopP,
        RepetitionPenalty = RepetitionPenalty,
        Seed = Seed,
        Stop = Stop,
        Greedy = Temperature == 0,
        OnToken = onToken,
    };
}

/// <summary>An expected failure of a job: a <see cref="JobErrorCodes"/> code and a message naming the field and the rule.</summary>
/// <param name="Code">One of <see cref="JobErrorCodes"/>.</param>
/// <param name="Message">Human-readable; for validation errors it names the field and the rule broken.</param>
public sealed record JobError(string Code, string Message);

/// <summary>
/// The outcome of <see cref="JobParser.Parse"/>: exactly one of <paramref name="Job"/> and
/// <paramref name="Error"/> is set. <paramref name="Id"/> and <paramref name="ReplyTo"/> are usable even
/// on error, so the <c>error</c> event can be addressed and correlated.
/// </summary>
/// <param name="Job">The validated request, or null on error.</param>
/// <param name="Error">The first rule broken, or null on success.</param>
/// <param name="Id">The payload's <c>id</c> if that field itself is valid, else a node-assigned id.</param>
/// <param name="ReplyTo">The payload's <c>reply_to</c> if that field itself is valid, else null.</param>
public sealed record JobParseResult(JobRequest? Job, JobError? Error, string Id, string? ReplyTo)
{
    /// <summary>True when the payload is a valid job (<see cref="Job"/> is set).</summary>
    [System.Diagnostics.CodeAnalysis.MemberNotNullWhen(true, nameof(Job))]
    [System.Diagnostics.CodeAnalysis.MemberNotNullWhen(false, nameof(Error))]
    public bool IsValid => Job is not null;
}

/// <summary>Limits applied by <see cref="JobParser"/>. The defaults are the contract's (DESIGN.md §3).</summary>
public sealed record JobLimits
{
    /// <summary>Largest accepted payload in bytes (checked before parsing). Default 64 KiB.</summary>
    public int MaxPayloadBytes { get; init; } = 64 * 1024;

    /// <summary>Largest <c>max_new_tokens</c>. Default 1024 (GPT-2 n_positions).</summary>
    public int MaxNewTokensLimit { get; init; } = 1024;

    /// <summary>Longest <c>id</c> in UTF-8 bytes. Default 128.</summary>
    public int MaxIdBytes { get; init; } = 128;

    /// <summary>Most <c>stop</c> sequences. Default 8.</summary>
    public int MaxStopSequences { get; init; } = 8;

    /// <summary>Longest <c>reply_to</c> topic in UTF-8 bytes. Default 1024.</summary>
    public int MaxReplyToBytes { get; init; } = 1024;
}
