using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Shared.Inference;

/// <summary>
/// Chooses the ONNX Runtime execution provider for a session. Today only CPU (ORT's default
/// provider, nothing to append). The seam for TensorRT → CUDA → CPU: append each configured
/// provider in order inside a try/catch, since C# <c>AppendExecutionProvider_*</c> throws when the
/// provider library is missing and does not fall back by itself (notes/onnxruntime.md; ONNX
/// Runtime issues 20589, 20597), log a warning per failure, and return the name of the first
/// one that was appended.
/// </summary>
internal static class ExecutionProviders
{
    public const string Cpu = "CPU";

    /// <summary>Configures <paramref name="options"/>; returns the provider name reported in <see cref="ModelInfo"/>.</summary>
    public static string Configure(SessionOptions options, InferenceSettings settings, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(logger);
        return Cpu;
    }
}
