namespace EdgeNode.Daemon.Mqtt;

/// <summary>The topic names of the job contract (DESIGN.md §3), for one topic prefix and node id.</summary>
internal sealed class Topics(string prefix, string nodeId)
{
    /// <summary>Pool submission topic, <c>{prefix}/jobs</c>.</summary>
    public string PoolJobs { get; } = prefix + "/jobs";

    /// <summary>Shared subscription on the pool topic, <c>$share/{prefix}/{prefix}/jobs</c> (MQTT 5 §4.8.2).</summary>
    public string SharedPoolJobs { get; } = "$share/" + prefix + "/" + prefix + "/jobs";

    /// <summary>Targeted submission topic, <c>{prefix}/nodes/{nodeId}/jobs</c>.</summary>
    public string NodeJobs { get; } = prefix + "/nodes/" + nodeId + "/jobs";

    /// <summary>Retained node status topic, <c>{prefix}/nodes/{nodeId}/status</c>.</summary>
    public string Status { get; } = prefix + "/nodes/" + nodeId + "/status";

    /// <summary>Cancel requests, <c>{prefix}/jobs/+/cancel</c> (DESIGN.md §3).</summary>
    public string CancelFilter { get; } = prefix + "/jobs/+/cancel";

    /// <summary>The job id of a cancel topic <c>{prefix}/jobs/{jobId}/cancel</c>, or null for any other topic.</summary>
    public string? CancelledJobId(string topic)
    {
        var head = prefix + "/jobs/";
        if (topic.Length > head.Length + "/cancel".Length && topic.StartsWith(head, StringComparison.Ordinal) && topic.EndsWith("/cancel", StringComparison.Ordinal))
        {
            var id = topic[head.Length..^"/cancel".Length];
            return id.Contains('/', StringComparison.Ordinal) ? null : id;
        }

        return null;
    }

    /// <summary>
    /// True for a topic the node reads or owns (its job topics, a cancel topic, its status topic). A reply topic there
    /// would make the node read its own events back as jobs (or overwrite its status), so a job asking for one is refused.
    /// </summary>
    public bool IsNodeTopic(string topic) =>
        topic == PoolJobs || topic == NodeJobs || topic == Status || CancelledJobId(topic) is not null;

    /// <summary>Default reply topic of a job without a response topic or <c>reply_to</c>: <c>{prefix}/results/{jobId}</c>.</summary>
    public string DefaultReply(string jobId) => prefix + "/results/" + jobId;
}
