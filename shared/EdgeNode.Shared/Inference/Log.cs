using Microsoft.Extensions.Logging;

namespace EdgeNode.Shared.Inference;

/// <summary>Inference log messages; event ids 3000–3099 belong to this feature.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 3000, Level = LogLevel.Information,
        Message = "Loaded model {Path}: {NLayer} layers, {NHead} heads, head_dim {HeadDim}, vocab {VocabSize}, n_positions {NPositions}, {Precision} on {ExecutionProvider} in {ElapsedMs:F0} ms")]
    public static partial void ModelLoaded(
        ILogger logger, string path, int nLayer, int nHead, int headDim, int vocabSize, int nPositions, string precision, string executionProvider, double elapsedMs);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning,
        Message = "Could not read the operator types of {Path} ({Reason}); reporting precision fp32")]
    public static partial void PrecisionUnknown(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Error,
        Message = "ONNX Runtime failed during generation after {GeneratedTokens} tokens")]
    public static partial void GenerationFailed(ILogger logger, int generatedTokens, Exception exception);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning,
        Message = "Execution provider {Provider} cannot be used: {Reason}; trying the next configured provider")]
    public static partial void ProviderUnavailable(ILogger logger, string provider, string reason);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Warning,
        Message = "Execution provider {Provider} skipped: {Path} is a dynamic INT8 (QOperator) model, which is CPU-only; configure Inference:ModelPaths:{Provider} with an FP16 or QDQ file to use it")]
    public static partial void ProviderSkippedDynamicInt8(ILogger logger, string provider, string path);
}
