namespace EdgeNode.Daemon.Tests.EndToEnd;

/// <summary>Tests that start daemons, brokers or ONNX sessions run one at a time (2-core machines).</summary>
[CollectionDefinition("Daemon", DisableParallelization = true)]
public sealed class DaemonCollection;
