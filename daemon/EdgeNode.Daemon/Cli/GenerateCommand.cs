using System.CommandLine;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeNode.Shared.Inference;

namespace EdgeNode.Daemon.Cli;

/// <summary>
/// <c>edgenode generate --model FILE [options] "prompt"</c>: runs one generation on a GPT-2 ONNX
/// model (DESIGN.md §2) and prints the generated text, or with <c>--json</c> one JSON object:
/// prompt, prompt_token_ids, token_ids (generated), text, finish_reason, execution_provider,
/// precision, timings {prefill_ms, decode_ms, prefill_tokens_per_s, decode_tokens_per_s}.
/// </summary>
/// <remarks>
/// Exit codes: 0 success; 2 usage error (an option out of range, no --model); 1 any other
/// failure (model file missing or refused, prompt_too_long, model_error, canceled with Ctrl+C).
/// Errors go to stderr. Parse errors (e.g. "--top-k abc") are reported by the root command's
/// parse-error handling.
/// </remarks>
internal static class GenerateCommand
{
    private const int ExitSuccess = 0;
    private const int ExitFailure = 1;
    private const int ExitUsage = 2;

    private static readonly JsonWriterOptions JsonOptions = new()
    {
        Indented = false, // one line: easy to pipe into jq or to log
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // stdout, not HTML: keep text readable
    };

    public static Command Create()
    {
        var defaults = new GenerationParameters();
        var model = new Option<string?>("--model") { Description = "GPT-2 ONNX model file (Optimum model.onnx, FP32 or INT8)", HelpName = "FILE" };
        var greedy = new Option<bool>("--greedy") { Description = "Greedy decoding (argmax); same as --temperature 0" };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "Tokens to generate at most", DefaultValueFactory = _ => defaults.MaxNewTokens };
        var temperature = new Option<float>("--temperature") { Description = "Softmax temperature; 0 = greedy", DefaultValueFactory = _ => defaults.Temperature };
        var topK = new Option<int>("--top-k") { Description = "Sample among the K most likely tokens; 0 = off", DefaultValueFactory = _ => defaults.TopK };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass in (0, 1]; 1 = off", DefaultValueFactory = _ => defaults.TopP };
        var repetitionPenalty = new Option<float>("--repetition-penalty") { Description = "CTRL repetition penalty; 1 = off", DefaultValueFactory = _ => defaults.RepetitionPenalty };
        var seed = new Option<long?>("--seed") { Description = "Sampling seed (same seed, same text on this machine)" };
        var stop = new Option<string[]>("--stop") { Description = "Stop sequence (repeatable)", Arity = ArgumentArity.ZeroOrMore };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads", DefaultValueFactory = _ => new InferenceSettings().IntraOpThreads };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with token ids and timings" };
        var prompt = new Argument<string>("prompt") { Description = "The prompt text" };

        var command = new Command("generate", "Generate text with a GPT-2 ONNX model (prefill, then KV-cache decode on ONNX Runtime)");
        foreach (var option in new Option[] { model, greedy, maxNewTokens, temperature, topK, topP, repetitionPenalty, seed, stop, threads, json })
        {
            command.Options.Add(option);
        }

        command.Arguments.Add(prompt);
        command.SetAction((parseResult, cancellationToken) =>
        {
            var request = new Request(
                parseResult.GetValue(model),
                parseResult.GetValue(prompt) ?? string.Empty,
                new GenerationParameters
                {
                    Greedy = parseResult.GetValue(greedy),
                    MaxNewTokens = parseResult.GetValue(maxNewTokens),
                    Temperature = parseResult.GetValue(temperature),
                    TopK = parseResult.GetValue(topK),
                    TopP = parseResult.GetValue(topP),
                    RepetitionPenalty = parseResult.GetValue(repetitionPenalty),
                    Seed = parseResult.GetValue(seed),
                    Stop = parseResult.GetValue(stop) ?? [],
                },
                parseResult.GetValue(threads),
                parseResult.GetValue(json));
            var io = parseResult.InvocationConfiguration;
            return Task.FromResult(Run(request, io.Output, io.Error, cancellationToken));
        });
        return command;
    }

    private sealed record Request(string? ModelPath, string Prompt, GenerationParameters Parameters, int Threads, bool Json);

    private static int Run(Request request, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(request.ModelPath))
        {
            error.WriteLine("generate: --model FILE is required");
            return ExitUsage;
        }

        if (request.Prompt.Length == 0)
        {
            error.WriteLine("generate: the prompt must not be empty (as for jobs, DESIGN.md §3)");
            return ExitUsage;
        }

        string? invalid = request.Parameters.Validate();
        if (invalid is not null)
        {
            error.WriteLine($"generate: {AsOptionName(invalid)}");
            return ExitUsage;
        }

        if (request.Threads < 1)
        {
            error.WriteLine("generate: --threads must be at least 1");
            return ExitUsage;
        }

        Gpt2Model model;
        try
        {
            model = Gpt2Model.Load(request.ModelPath, new InferenceSettings { IntraOpThreads = request.Threads });
        }
        catch (ModelLoadException ex)
        {
            error.WriteLine($"generate: {ex.Message}");
            return ExitFailure;
        }

        using (model)
        {
            var outcome = new Gpt2Generator(model, Gpt2Tokenizer.Shared).Generate(request.Prompt, request.Parameters, cancellationToken);
            if (!outcome.Succeeded)
            {
                error.WriteLine($"generate: {outcome.Error.Code}: {outcome.Error.Message}");
                return ExitFailure;
            }

            if (request.Json)
            {
                output.WriteLine(ToJson(request.Prompt, outcome.Result, model.Info));
            }
            else
            {
                output.WriteLine(outcome.Result.Text);
            }

            return ExitSuccess;
        }
    }

    /// <summary>"top_p must be ..." → "--top-p must be ...": name the option the user typed.</summary>
    private static string AsOptionName(string message)
    {
        int space = message.IndexOf(' ', StringComparison.Ordinal);
        return space > 0 ? "--" + message[..space].Replace('_', '-') + message[space..] : message;
    }

    internal static string ToJson(string prompt, GenerationResult result, ModelInfo info)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("prompt", prompt);
            WriteIds(writer, "prompt_token_ids", result.PromptTokens);
            WriteIds(writer, "token_ids", result.GeneratedTokens);
            writer.WriteString("text", result.Text);
            writer.WriteString("finish_reason", result.FinishReason.ToString().ToLowerInvariant());
            writer.WriteString("execution_provider", info.ExecutionProvider);
            writer.WriteString("precision", info.Precision);
            writer.WriteStartObject("timings");
            writer.WriteNumber("prefill_ms", Math.Round(result.PrefillMs, 3));
            writer.WriteNumber("decode_ms", Math.Round(result.DecodeMs, 3));
            writer.WriteNumber("prefill_tokens_per_s", Math.Round(result.PrefillTokensPerSecond, 1));
            writer.WriteNumber("decode_tokens_per_s", Math.Round(result.DecodeTokensPerSecond, 1));
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteIds(Utf8JsonWriter writer, string name, IReadOnlyList<int> ids)
    {
        writer.WriteStartArray(name);
        foreach (int id in ids)
        {
            writer.WriteNumberValue(id);
        }

        writer.WriteEndArray();
    }
}
