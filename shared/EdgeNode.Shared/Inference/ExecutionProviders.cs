using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Shared.Inference;

/// <summary>Names of the ONNX Runtime execution providers EdgeNode can use (configuration values of <c>Inference:ExecutionProviders</c>).</summary>
public static class ExecutionProviderNames
{
    /// <summary>NVIDIA TensorRT (libonnxruntime_providers_tensorrt; JetPack's ONNX Runtime build on Jetson).</summary>
    public const string TensorRT = "TensorRT";

    /// <summary>NVIDIA CUDA (libonnxruntime_providers_cuda).</summary>
    public const string Cuda = "CUDA";

    /// <summary>ONNX Runtime's default CPU provider; always available.</summary>
    public const string Cpu = "CPU";

    /// <summary>The names above, in the default order of <c>Inference:ExecutionProviders</c>.</summary>
    public static IReadOnlyList<string> All { get; } = [TensorRT, Cuda, Cpu];

    /// <summary>The canonical name for <paramref name="name"/> (case-insensitive), or null when it is not a known provider.</summary>
    public static string? Normalize(string? name) =>
        All.FirstOrDefault(n => string.Equals(n, name?.Trim(), StringComparison.OrdinalIgnoreCase));
}

/// <summary>
/// Appends one execution provider to a <see cref="SessionOptions"/>. C#'s
/// <c>AppendExecutionProvider_Tensorrt/_CUDA</c> throw when the provider library is missing and do not
/// fall back by themselves (notes/onnxruntime.md; ONNX Runtime issues 20589, 20597): the caller
/// (<see cref="Gpt2Model.Load"/>) tries each configured provider in order with a fresh SessionOptions
/// and catches <see cref="ProviderUnavailableException"/>.
/// </summary>
internal static class ExecutionProviders
{
    /// <summary>
    /// Appends <paramref name="provider"/> (a canonical name). CPU appends nothing (ORT's default).
    /// TensorRT also appends CUDA after it when available (for nodes TensorRT does not take).
    /// </summary>
    /// <param name="options">Fresh session options.</param>
    /// <param name="provider">A name from <see cref="ExecutionProviderNames"/>.</param>
    /// <param name="settings">TensorRT flags and cache directory.</param>
    /// <param name="inputs">The model's graph inputs (for the TensorRT shape profiles); may be empty for CPU/CUDA.</param>
    /// <param name="maxSequence">Largest total sequence in tokens (n_positions) for the profiles.</param>
    /// <exception cref="ProviderUnavailableException">The provider library is missing or refuses the options; the message says why.</exception>
    public static void Append(SessionOptions options, string provider, InferenceSettings settings, IReadOnlyList<ScannedInput> inputs, int maxSequence)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(settings);
        try
        {
            switch (provider)
            {
                case ExecutionProviderNames.Cpu:
                    return;
                case ExecutionProviderNames.Cuda:
                    options.AppendExecutionProvider_CUDA(settings.DeviceId);
                    return;
                case ExecutionProviderNames.TensorRT:
                    using (var trt = new OrtTensorRTProviderOptions())
                    {
                        trt.UpdateOptions(TensorRtOptions(settings, inputs, maxSequence));
                        options.AppendExecutionProvider_Tensorrt(trt);
                    }

                    try
                    {
                        options.AppendExecutionProvider_CUDA(settings.DeviceId);
                    }
                    catch (Exception ex) when (IsProviderFailure(ex))
                    {
                        // TensorRT without CUDA: its unsupported nodes go to the CPU.
                    }

                    return;
                default:
                    throw new ProviderUnavailableException($"unknown execution provider '{provider}'");
            }
        }
        catch (Exception ex) when (IsProviderFailure(ex))
        {
            throw new ProviderUnavailableException(ex.Message, ex);
        }
    }

    /// <summary>Exceptions that mean "this provider cannot be used here" (missing library, no device, bad option).</summary>
    public static bool IsProviderFailure(Exception ex) =>
        ex is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException or BadImageFormatException;

    /// <summary>
    /// TensorRT provider options (ONNX Runtime TensorRT EP docs, "Configurations"): engine and timing
    /// caches under <see cref="InferenceSettings.TensorRtCacheDirectory"/>, fp16/int8 flags, and explicit
    /// min/opt/max shape profiles for every dynamic input (all three are required together). Profiles:
    /// batch 1..MaxBatch; input_ids/position_ids sequence 1..maxSequence; attention_mask 1..maxSequence;
    /// past_key_values.* sequence 0..maxSequence-1 (0 is the empty past of the prefill); opt = decode at
    /// half the context.
    /// </summary>
    public static Dictionary<string, string> TensorRtOptions(InferenceSettings settings, IReadOnlyList<ScannedInput> inputs, int maxSequence)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(inputs);
        var result = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["device_id"] = settings.DeviceId.ToString(CultureInfo.InvariantCulture),
            ["trt_fp16_enable"] = settings.TensorRtFp16 ? "1" : "0",
            ["trt_int8_enable"] = settings.TensorRtInt8 ? "1" : "0",
        };
        if (!string.IsNullOrWhiteSpace(settings.TensorRtCacheDirectory))
        {
            Directory.CreateDirectory(settings.TensorRtCacheDirectory);
            result["trt_engine_cache_enable"] = "1";
            result["trt_engine_cache_path"] = settings.TensorRtCacheDirectory;
            result["trt_timing_cache_enable"] = "1";
            result["trt_timing_cache_path"] = settings.TensorRtCacheDirectory;
        }

        var (min, opt, max) = ShapeProfiles(inputs, settings.MaxBatch, maxSequence);
        if (min.Length > 0)
        {
            result["trt_profile_min_shapes"] = min;
            result["trt_profile_opt_shapes"] = opt;
            result["trt_profile_max_shapes"] = max;
        }

        return result;
    }

    /// <summary>"name:AxBxC,..." strings for the min, opt and max profiles of the GPT-2 inputs (bool use_cache_branch is fixed-shape and skipped).</summary>
    internal static (string Min, string Opt, string Max) ShapeProfiles(IReadOnlyList<ScannedInput> inputs, int maxBatch, int maxSequence)
    {
        var min = new List<string>();
        var opt = new List<string>();
        var max = new List<string>();
        int half = Math.Max(1, maxSequence / 2);
        foreach (var input in inputs)
        {
            if (input.Name is Gpt2Signature.InputIds or Gpt2Signature.PositionIds)
            {
                Add(input.Name, [1, 1], [1, 1], [maxBatch, maxSequence]);
            }
            else if (input.Name == Gpt2Signature.AttentionMask)
            {
                Add(input.Name, [1, 1], [1, half], [maxBatch, maxSequence]);
            }
            else if (input.Name.StartsWith("past_key_values.", StringComparison.Ordinal) && input.Dims.Count == 4)
            {
                long heads = input.Dims[1], headDim = input.Dims[3];
                Add(input.Name, [1, heads, 0, headDim], [1, heads, half - 1, headDim], [maxBatch, heads, maxSequence - 1, headDim]);
            }
        }

        return (string.Join(',', min), string.Join(',', opt), string.Join(',', max));

        void Add(string name, long[] lo, long[] mid, long[] hi)
        {
            min.Add(Format(name, lo));
            opt.Add(Format(name, mid));
            max.Add(Format(name, hi));
        }

        static string Format(string name, long[] dims) =>
            name + ":" + string.Join('x', dims.Select(d => d.ToString(CultureInfo.InvariantCulture)));
    }
}

/// <summary>An execution provider cannot be used on this machine (library missing, no device, options refused).</summary>
internal sealed class ProviderUnavailableException : Exception
{
    public ProviderUnavailableException()
    {
    }

    public ProviderUnavailableException(string message)
        : base(message)
    {
    }

    public ProviderUnavailableException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
