using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;

namespace EdgeNode.Shared.Tests.Inference;

/// <summary>Generation case 6: a provider chain on a machine without GPU providers falls back to CPU, loudly.</summary>
[Collection(OnnxCollectionDefinition.Name)]
public sealed class ExecutionProviderTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void Load_TensorRtCudaCpuWithoutGpu_FallsBackToCpuWithOneWarningPerFailedProvider()
    {
        var logger = new TestLogger();
        var stages = new List<string>();
        var settings = new InferenceSettings
        {
            IntraOpThreads = 1,
            ExecutionProviders = ["TensorRT", "CUDA", "CPU"],
            TensorRtCacheDirectory = fixture.PathFor("trt-cache"),
            OnStage = stages.Add,
        };

        using var model = Gpt2Model.Load(fixture.ModelPath, settings, logger);

        Assert.Equal("CPU", model.Info.ExecutionProvider);
        var warnings = logger.Warnings;
        Assert.Equal(2, warnings.Count);
        Assert.StartsWith("Execution provider TensorRT cannot be used: ", warnings[0], StringComparison.Ordinal);
        Assert.StartsWith("Execution provider CUDA cannot be used: ", warnings[1], StringComparison.Ordinal);
        Assert.Equal(["building TensorRT engine"], stages);
        Assert.True(new Gpt2Generator(model, Gpt2Tokenizer.Shared).Generate("Hi", new GenerationParameters { Greedy = true, MaxNewTokens = 2 }).Succeeded);
    }

    [Fact]
    public void Load_CpuOnly_LogsNoWarning()
    {
        var logger = new TestLogger();

        using var model = Gpt2Model.Load(fixture.ModelPath, new InferenceSettings { IntraOpThreads = 1, ExecutionProviders = ["CPU"] }, logger);

        Assert.Equal("CPU", model.Info.ExecutionProvider);
        Assert.Empty(logger.Warnings);
    }

    [Fact]
    public void Load_DynamicInt8WithoutGpuFile_SkipsGpuProvidersSayingWhy()
    {
        string path = fixture.PathFor("int8-providers.onnx");
        ModelSynthesizer.WriteFile(TinyModelFixture.Options with { Precision = ModelPrecision.Int8 }, path);
        var logger = new TestLogger();
        var stages = new List<string>();

        using var model = Gpt2Model.Load(
            path, new InferenceSettings { IntraOpThreads = 1, ExecutionProviders = ["TensorRT", "CUDA", "CPU"], OnStage = stages.Add }, logger);

        Assert.Equal("CPU", model.Info.ExecutionProvider);
        Assert.Equal(2, logger.Warnings.Count);
        Assert.All(logger.Warnings, w => Assert.Contains("dynamic INT8 (QOperator) model, which is CPU-only", w, StringComparison.Ordinal));
        Assert.Empty(stages); // no engine build was attempted
    }

    [Fact]
    public void Load_DynamicInt8WithPerProviderFile_TriesTheProviderOnItsFile()
    {
        string path = fixture.PathFor("int8-default.onnx");
        ModelSynthesizer.WriteFile(TinyModelFixture.Options with { Precision = ModelPrecision.Int8 }, path);
        var logger = new TestLogger();

        using var model = Gpt2Model.Load(
            path,
            new InferenceSettings
            {
                IntraOpThreads = 1,
                ExecutionProviders = ["CUDA", "CPU"],
                ModelPaths = new Dictionary<string, string> { ["CUDA"] = fixture.ModelPath },
            },
            logger);

        Assert.Equal("CPU", model.Info.ExecutionProvider);
        Assert.Equal("int8", model.Info.Precision);
        Assert.StartsWith("Execution provider CUDA cannot be used: ", Assert.Single(logger.Warnings), StringComparison.Ordinal);
    }

    [Fact]
    public void Load_OnlyGpuProvidersWithoutGpu_ThrowsNamingEachFailure()
    {
        var logger = new TestLogger();

        var ex = Assert.Throws<ModelLoadException>(() => Gpt2Model.Load(
            fixture.ModelPath, new InferenceSettings { IntraOpThreads = 1, ExecutionProviders = ["CUDA"] }, logger));

        Assert.Contains("no execution provider could be used", ex.Message, StringComparison.Ordinal);
        Assert.Contains("CUDA: ", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_UnknownProvider_ThrowsNamingIt()
    {
        var ex = Assert.Throws<ArgumentException>(() => Gpt2Model.Load(
            fixture.ModelPath, new InferenceSettings { ExecutionProviders = ["OpenVINO", "CPU"] }));

        Assert.Contains("unknown provider 'OpenVINO'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TensorRtOptions_TinyModel_HasCachesFlagsAndAllThreeProfiles()
    {
        var inputs = OnnxOpScanner.Read(fixture.ModelPath).Inputs;
        var settings = new InferenceSettings { TensorRtCacheDirectory = fixture.PathFor("trt"), TensorRtFp16 = true, MaxBatch = 2 };

        var options = ExecutionProviders.TensorRtOptions(settings, inputs, 1024);

        Assert.Equal("1", options["trt_fp16_enable"]);
        Assert.Equal("0", options["trt_int8_enable"]);
        Assert.Equal("1", options["trt_engine_cache_enable"]);
        Assert.Equal(fixture.PathFor("trt"), options["trt_engine_cache_path"]);
        Assert.Equal(fixture.PathFor("trt"), options["trt_timing_cache_path"]);
        Assert.StartsWith("input_ids:1x1,attention_mask:1x1,position_ids:1x1,past_key_values.0.key:1x2x0x32,", options["trt_profile_min_shapes"], StringComparison.Ordinal);
        Assert.Contains("past_key_values.1.value:2x2x1023x32", options["trt_profile_max_shapes"], StringComparison.Ordinal);
        Assert.Contains("attention_mask:1x512", options["trt_profile_opt_shapes"], StringComparison.Ordinal);
    }
}
