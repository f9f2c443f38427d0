namespace EdgeNode.Shared.Tests;

/// <summary>
/// Tests that open ONNX Runtime sessions run one at a time ([Collection("Onnx")]): each session uses the cores for
/// its intra-op threads and up to a few hundred MB, and the machines running the suite have 2 cores.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class OnnxCollectionDefinition
{
    public const string Name = "Onnx";
}
