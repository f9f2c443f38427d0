using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Shared.Inference;

/// <summary>One graph input or output: name, element type ("float32", "int64", "bool") and dims (symbolic dims by name).</summary>
public sealed record TensorDescription(string Name, string ElementType, IReadOnlyList<string> Dims);

/// <summary>What <see cref="ModelInspection.Inspect"/> found in a model file (for <c>edgenode model inspect</c>).</summary>
/// <param name="Info">Variant, shape, precision (loaded on CPU, so ExecutionProvider is "CPU").</param>
/// <param name="Inputs">Graph inputs in file order.</param>
/// <param name="Outputs">Graph outputs in file order.</param>
/// <param name="DynamicInt8">True for a quantize_dynamic (QOperator) file: CPU-only.</param>
/// <param name="SuitableProviders">Providers this file suits, best first (a subset of <see cref="ExecutionProviderNames.All"/>).</param>
/// <param name="ProviderNote">Why the list is what it is.</param>
public sealed record ModelInspection(
    ModelInfo Info,
    IReadOnlyList<TensorDescription> Inputs,
    IReadOnlyList<TensorDescription> Outputs,
    bool DynamicInt8,
    IReadOnlyList<string> SuitableProviders,
    string ProviderNote)
{
    /// <summary>
    /// Loads <paramref name="path"/> on the CPU provider, checks the GPT-2 signature and describes it.
    /// Provider advice (notes/onnxruntime.md): dynamic INT8 (MatMulInteger/DynamicQuantizeLinear) runs only on the
    /// CPU (ORT's CUDA provider falls back to the CPU for those ops; TensorRT needs QDQ or calibration); FP32, FP16
    /// and QDQ files suit TensorRT, CUDA and CPU.
    /// </summary>
    /// <exception cref="ModelLoadException">Missing, unloadable or not a GPT-2 signature (the message names the problems).</exception>
    public static ModelInspection Inspect(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var model = Gpt2Model.Load(path, new InferenceSettings { IntraOpThreads = 1 });
        bool dynamicInt8;
        try
        {
            dynamicInt8 = OnnxOpScanner.IsDynamicInt8(OnnxOpScanner.ReadOpTypes(model.Info.Path));
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            dynamicInt8 = false;
        }

        return new ModelInspection(
            model.Info,
            Describe(model.Session.InputMetadata, model.Session.InputNames),
            Describe(model.Session.OutputMetadata, model.Session.OutputNames),
            dynamicInt8,
            dynamicInt8 ? [ExecutionProviderNames.Cpu] : ExecutionProviderNames.All,
            dynamicInt8
                ? "dynamic INT8 (QOperator) is CPU-only: give GPU providers an FP16 or QDQ file via Inference:ModelPaths"
                : "FP32/FP16/QDQ graph: TensorRT (engine built on first load), CUDA and CPU can all run it");
    }

    private static TensorDescription[] Describe(IReadOnlyDictionary<string, NodeMetadata> metadata, IReadOnlyList<string> order) =>
        order.Select(name =>
        {
            var m = metadata[name];
            var dims = m.Dimensions.Select((d, i) =>
                d >= 0 ? d.ToString(System.Globalization.CultureInfo.InvariantCulture)
                : (m.SymbolicDimensions.Length > i && !string.IsNullOrEmpty(m.SymbolicDimensions[i]) ? m.SymbolicDimensions[i] : "?")).ToArray();
            string type = m.ElementDataType switch
            {
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float => "float32",
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64 => "int64",
                Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Bool => "bool",
                var other => other.ToString().ToLowerInvariant(),
            };
            return new TensorDescription(name, type, dims);
        }).ToArray();
}
