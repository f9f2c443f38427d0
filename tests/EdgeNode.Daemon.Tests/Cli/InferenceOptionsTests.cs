using System.ComponentModel.DataAnnotations;
using EdgeNode.Daemon.Options;
using Microsoft.Extensions.Configuration;

namespace EdgeNode.Daemon.Tests.Cli;

public sealed class InferenceOptionsTests
{
    [Fact]
    public void Bind_NoConfiguration_DefaultsToTensorRtCudaCpu()
    {
        var options = Bind([]);

        Assert.Equal(["TensorRT", "CUDA", "CPU"], options.EffectiveExecutionProviders);
        Assert.Empty(Validate(options));
    }

    [Fact]
    public void Bind_ConfiguredList_ReplacesTheDefault()
    {
        var options = Bind(new() { ["Inference:ExecutionProviders:0"] = "cpu" });

        Assert.Equal(["cpu"], options.EffectiveExecutionProviders);
        Assert.Empty(Validate(options));
        Assert.Equal(["CPU"], options.ToSettings("/tmp/state", null).ExecutionProviders);
    }

    [Fact]
    public void Validate_UnknownProvider_NamesTheKey()
    {
        var options = Bind(new() { ["Inference:ExecutionProviders:0"] = "CUDA", ["Inference:ExecutionProviders:1"] = "OpenVINO" });

        var error = Assert.Single(Validate(options));

        Assert.StartsWith("Inference:ExecutionProviders:1 is 'OpenVINO', which is not an execution provider", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_ModelPathForMissingFile_NamesTheKey()
    {
        var options = Bind(new() { ["Inference:ModelPaths:TensorRT"] = "/nonexistent/model-fp16.onnx" });

        var error = Assert.Single(Validate(options));

        Assert.StartsWith("Inference:ModelPaths:TensorRT names a file that does not exist", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ToSettings_StateDirectory_PutsTensorRtCachesUnderTrtCache()
    {
        var settings = Bind([]).ToSettings("/var/lib/edgenode", null);

        Assert.Equal(Path.Combine("/var/lib/edgenode", "trt-cache"), settings.TensorRtCacheDirectory);
        Assert.True(settings.TensorRtFp16);
    }

    private static InferenceOptions Bind(Dictionary<string, string?> values)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        var options = new InferenceOptions();
        configuration.GetSection(InferenceOptions.Section).Bind(options);
        return options;
    }

    private static List<string> Validate(InferenceOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results.Select(r => r.ErrorMessage!).ToList();
    }
}
