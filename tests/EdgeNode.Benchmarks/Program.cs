using System.Diagnostics;
using System.Globalization;
using EdgeNode.Shared.Inference;
using EdgeNode.Shared.Inference.Synthesis;
using Microsoft.ML.OnnxRuntime;

namespace EdgeNode.Benchmarks;

/// <summary>
/// Inference benchmark (docs/BENCHMARKS.md, issue 3 item 7). One model per process so that peak RSS (VmHWM) belongs to
/// that model alone:
///   dotnet run -c Release --project tests/EdgeNode.Benchmarks -- speed MODEL [--threads N] [--opt all|basic|extended|none] [--runs N]
///   dotnet run -c Release --project tests/EdgeNode.Benchmarks -- memory [--count 1000]
///   dotnet run -c Release --project tests/EdgeNode.Benchmarks -- offload [--seconds 60] (Offload/OffloadBenchmark.cs)
/// MODEL: tiny-fp32, tiny-int8, tiny-int8-lmhead, small-fp32, small-int8, small-int8-lmhead (synthesized, seed 42, cached
/// under $TMPDIR/edgenode-bench). speed: prompt of exactly 64 tokens, 64 new tokens, greedy; prints the best and median
/// prefill tok/s (64 / time to first token) and decode tok/s (63 / decode time) over the runs after one warm-up, and
/// peak RSS in MiB. memory: RSS after 50 and after N sequential tiny generations (every OrtValue disposed means flat).
///   dotnet run -c Release --project tests/EdgeNode.Benchmarks -- ingest [--rate 5000] [--seconds 10] [--jobs 20000] ...
/// ingest: the daemon's ingest path end to end (see <see cref="IngestBenchmark"/>).
/// </summary>
internal static class Program
{
    private const int PromptTokens = 64;
    private const int NewTokens = 64;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length >= 1 && args[0] == "offload")
        {
            return await Offload.OffloadBenchmark.RunAsync(args[1..]);
        }

        if (args.Length >= 1 && args[0] == "ingest")
        {
            return await IngestBenchmark.RunAsync(args);
        }

        if (args.Length >= 1 && args[0] == "memory")
        {
            return Memory(Option(args, "--count", 1000));
        }

        if (args.Length < 2 || args[0] != "speed")
        {
            Console.Error.WriteLine("usage: speed MODEL [--threads N] [--opt all|extended|basic|none] [--runs N] | memory [--count N]"
                + " | ingest [--rate 5000] [--seconds 10] [--feeders 1] [--device-latency false] [--jobs 20000] [--publishers 4] [--window 256] [--state-root DIR] [--only open|saturation|idle]");
            return 2;
        }

        return Speed(args[1], Option(args, "--threads", 2), OptionText(args, "--opt", "all"), Option(args, "--runs", 5));
    }

    private static int Speed(string name, int threads, string opt, int runs)
    {
        string path = EnsureModel(name);
        var level = opt switch
        {
            "none" => GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic" => GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended" => GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            _ => GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        long loadStarted = Stopwatch.GetTimestamp();
        using var model = Gpt2Model.Load(path, new InferenceSettings { IntraOpThreads = threads, GraphOptimizationLevel = level });
        double loadMs = Stopwatch.GetElapsedTime(loadStarted).TotalMilliseconds;
        var generator = new Gpt2Generator(model, Gpt2Tokenizer.Shared);
        string prompt = Prompt();
        var parameters = new GenerationParameters { Greedy = true, MaxNewTokens = NewTokens };

        generator.Generate(prompt, parameters); // warm-up
        var prefill = new List<double>();
        var decode = new List<double>();
        int generated = 0;
        for (int i = 0; i < runs; i++)
        {
            var result = generator.Generate(prompt, parameters).Result ?? throw new InvalidOperationException("generation failed");
            prefill.Add(result.PrefillTokensPerSecond);
            decode.Add(result.DecodeTokensPerSecond);
            generated = result.GeneratedTokens.Count;
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {threads} | {opt} | {prefill.Max():F0} | {Median(prefill):F0} | {decode.Max():F1} | {Median(decode):F1} | {PeakRssMiB():F0} | {loadMs:F0} | {generated} |"));
        return 0;
    }

    private static int Memory(int count)
    {
        string path = EnsureModel("tiny-int8");
        using var model = Gpt2Model.Load(path, new InferenceSettings { IntraOpThreads = 2 });
        var generator = new Gpt2Generator(model, Gpt2Tokenizer.Shared);
        var parameters = new GenerationParameters { MaxNewTokens = 16, Seed = 1 };
        double after50 = 0;
        long started = Stopwatch.GetTimestamp();
        for (int i = 1; i <= count; i++)
        {
            _ = generator.Generate($"Request {i}: the weather today is", parameters with { Seed = i });
            if (i == 50)
            {
                after50 = CurrentRssMiB();
            }
        }

        double after = CurrentRssMiB();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"memory: RSS after 50 = {after50:F1} MiB, after {count} = {after:F1} MiB, growth {(after - after50) / after50 * 100:F1}% (bound 10%), {Stopwatch.GetElapsedTime(started).TotalSeconds:F0} s"));
        return after <= after50 * 1.10 ? 0 : 1;
    }

    /// <summary>Exactly 64 GPT-2 tokens of ordinary English.</summary>
    private static string Prompt()
    {
        const string Text =
            "The old lighthouse keeper climbed the spiral stairs every evening, carrying a lantern and a thermos of tea. " +
            "From the top he could see the fishing boats returning to the harbour, their lights scattered across the dark water " +
            "like stars that had fallen into the sea. He had kept the light burning for forty years, through storms and calm nights alike, " +
            "and he knew every rock on the coast by name.";
        var tokens = Gpt2Tokenizer.Shared.Encode(Text).Take(PromptTokens).ToArray();
        string prompt = Gpt2Tokenizer.Shared.Decode(tokens);
        int count = Gpt2Tokenizer.Shared.CountTokens(prompt);
        return count == PromptTokens ? prompt : throw new InvalidOperationException($"prompt has {count} tokens, not {PromptTokens}");
    }

    private static string EnsureModel(string name)
    {
        var options = name switch
        {
            "tiny-fp32" => new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Fp32, false, 42),
            "tiny-int8" => new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, false, 42),
            "tiny-int8-lmhead" => new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Int8, true, 42),
            "small-fp32" => new SynthesisOptions(ModelPreset.Small, ModelPrecision.Fp32, false, 42),
            "small-int8" => new SynthesisOptions(ModelPreset.Small, ModelPrecision.Int8, false, 42),
            "small-int8-lmhead" => new SynthesisOptions(ModelPreset.Small, ModelPrecision.Int8, true, 42),
            _ => throw new ArgumentException($"unknown model '{name}'", nameof(name)),
        };
        string path = Path.Combine(Path.GetTempPath(), "edgenode-bench", $"{name}.onnx");
        if (!File.Exists(path))
        {
            ModelSynthesizer.WriteFile(options, path);
        }

        return path;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    private static double PeakRssMiB() => StatusKiB("VmHWM:") / 1024.0;

    private static double CurrentRssMiB() => StatusKiB("VmRSS:") / 1024.0;

    private static long StatusKiB(string key)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
            {
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    internal static int Option(string[] args, string name, int fallback) =>
        int.TryParse(OptionText(args, name, string.Empty), NumberStyles.None, CultureInfo.InvariantCulture, out int value) ? value : fallback;

    internal static string OptionText(string[] args, string name, string fallback)
    {
        int index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? args[index + 1] : fallback;
    }
}
