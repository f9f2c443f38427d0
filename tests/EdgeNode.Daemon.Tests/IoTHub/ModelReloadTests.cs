using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeNode.Daemon.Execution;
using EdgeNode.Daemon.Options;
using EdgeNode.Shared.Inference.Synthesis;
using EdgeNode.TestSupport;
using EdgeNode.TestSupport.IoTHub;
using Google.Protobuf;
using Microsoft.Extensions.Options;

namespace EdgeNode.Daemon.Tests.IoTHub;

/// <summary>
/// The direct method <c>reloadModel</c> and the desired properties <c>modelPath</c> / <c>modelPaths</c> against the
/// emulator with synthesized models (issue 6): the new file loads beside the serving one, its GPT-2 signature is checked
/// (DESIGN.md §2), and the swap happens between jobs.
/// </summary>
[Collection("Daemon")]
public sealed class ModelReloadTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ReloadModel_ValidFile_Answers200WithNewModel_AndNextJobRunsOnIt()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the first reported properties");
        Assert.Equal("tiny-int8-42.onnx", (string?)hub.Reported["model"]);

        var (status, body) = await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = Models.TinyFp32 }, Timeout);

        Assert.Equal(200, status);
        Assert.True((bool)body!["reloaded"]!);
        Assert.Equal(Models.TinyFp32, (string?)body["path"]);
        Assert.Equal(Models.TinyInt8, (string?)body["previous"]);
        Assert.Equal("fp32", (string?)body["precision"]);
        Assert.Equal(2, (int)body["n_layer"]!);
        Assert.Equal(Models.TinyFp32, node.Service<ModelHost>().Info.Path);
        Assert.Equal(Models.TinyFp32, node.Service<IOptions<InferenceOptions>>().Value.ModelPath);
        await hub.WaitUntilAsync(h => (string?)h.Reported["model"] == "tiny-fp32-42.onnx", Timeout, "the new model reported");

        await hub.SendC2dAsync("{\"id\":\"after-reload\",\"prompt\":\"Hello\",\"max_new_tokens\":3}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "after-reload", "result")), Timeout, "a job on the new model");
        Assert.Equal("SUCCEEDED", Json(hub.D2c.First(m => IsEvent(m, "after-reload", "result"))).GetProperty("status").GetString());

        // The same file again is not loaded twice.
        var again = await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = Models.TinyFp32 }, Timeout);
        Assert.Equal(200, again.Status);
        Assert.False((bool)again.Body!["reloaded"]!);
        Assert.Equal(1, node.Service<ModelHost>().Swaps);
    }

    [Fact]
    public async Task ReloadModel_MissingFileOrNotGpt2OrBadPayload_Answers400_OldModelKeepsServing()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the first reported properties");
        var dir = Path.GetDirectoryName(hub.CaFile)!;

        // A valid ONNX graph whose signature is not GPT-2's: input_ids renamed.
        var renamed = ModelSynthesizer.Build(new SynthesisOptions(ModelPreset.Tiny, ModelPrecision.Fp32, QuantizeLmHead: false, Seed: 3));
        var input = renamed.Graph.Input.Single(i => i.Name == "input_ids");
        input.Name = "tokens";
        foreach (var n in renamed.Graph.Node)
        {
            for (var i = 0; i < n.Input.Count; i++)
            {
                if (n.Input[i] == "input_ids")
                {
                    n.Input[i] = "tokens";
                }
            }
        }

        var notGpt2 = Path.Combine(dir, "not-gpt2.onnx");
        await File.WriteAllBytesAsync(notGpt2, renamed.ToByteArray());
        var garbage = Path.Combine(dir, "garbage.onnx");
        await File.WriteAllBytesAsync(garbage, [1, 2, 3, 4, 5, 6, 7, 8]);

        var missing = await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = Path.Combine(dir, "nope.onnx") }, Timeout);
        Assert.Equal(400, missing.Status);
        Assert.Equal("invalid_model", (string?)missing.Body!["error"]!["code"]);
        Assert.Contains("does not exist", (string?)missing.Body["error"]!["message"], StringComparison.Ordinal);

        var signature = await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = notGpt2 }, Timeout);
        Assert.Equal(400, signature.Status);
        Assert.Contains("model input 'input_ids' is missing", (string?)signature.Body!["error"]!["message"], StringComparison.Ordinal);

        Assert.Equal(400, (await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = garbage }, Timeout)).Status);
        var provider = await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["paths"] = new JsonObject { ["GPU9"] = Models.TinyFp32 } }, Timeout);
        Assert.Equal(400, provider.Status);
        Assert.Contains("'GPU9' is not an execution provider", (string?)provider.Body!["error"]!["message"], StringComparison.Ordinal);
        var shape = await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = 5 }, Timeout);
        Assert.Equal(400, shape.Status);
        Assert.Equal("invalid_request", (string?)shape.Body!["error"]!["code"]);

        Assert.Equal(Models.TinyInt8, node.Service<ModelHost>().Info.Path);
        Assert.Equal(0, node.Service<ModelHost>().Swaps);
        await hub.SendC2dAsync("{\"id\":\"still-serving\",\"prompt\":\"Hello\",\"max_new_tokens\":3}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "still-serving", "result")), Timeout, "a job on the old model");
        Assert.Equal("SUCCEEDED", Json(hub.D2c.First(m => IsEvent(m, "still-serving", "result"))).GetProperty("status").GetString());
    }

    /// <summary>
    /// A job streams slowly (test hook); a reload during it waits for the job to end, a second reload meanwhile gets 409,
    /// and once the job ends (canceled here) the swap happens: the job's outcome is already recorded when the 200 comes.
    /// </summary>
    [Fact]
    public async Task ReloadModel_WhileAJobRuns_SwapsOnlyAfterTheJob_SecondCallGets409()
    {
        await using var node = await IoTHubNode.StartAsync(extra: new Dictionary<string, string?> { ["Testing:DecodeStepDelayMs"] = "100" }, testHooks: true);
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the first reported properties");
        await hub.SendC2dAsync("{\"id\":\"long-1\",\"prompt\":\"Count\",\"max_new_tokens\":1000,\"temperature\":0,\"stream\":true}"u8.ToArray());
        await hub.WaitUntilAsync(h => h.D2c.Any(m => IsEvent(m, "long-1", "token")), Timeout, "the running job's first token");

        var first = hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = Models.TinyFp32 }, Timeout);
        var second = await hub.InvokeMethodAsync("reloadModel", new JsonObject { ["path"] = Models.TinyFp32 }, Timeout);

        Assert.Equal(409, second.Status);
        Assert.Equal("reload_in_progress", (string?)second.Body!["error"]!["code"]);
        Assert.False(first.IsCompleted, "the first reload waits for the running job");
        Assert.Equal(Models.TinyInt8, node.Service<ModelHost>().Info.Path);

        Assert.Equal(200, (await hub.InvokeMethodAsync("cancelJob", new JsonObject { ["id"] = "long-1" }, Timeout)).Status);
        var (status, body) = await first;
        Assert.Equal(200, status);
        Assert.Equal(Models.TinyFp32, (string?)body!["path"]);
        var job = await hub.InvokeMethodAsync("getJob", new JsonObject { ["id"] = "long-1" }, Timeout);
        Assert.Equal("CANCELED", (string?)job.Body!["status"]);
    }

    [Fact]
    public async Task DesiredModelPath_Valid_SwapsAndReports_InvalidRejectsWholePatch()
    {
        await using var node = await IoTHubNode.StartAsync();
        var hub = node.Hub;
        await hub.WaitUntilAsync(h => h.Reported["config"] is not null, Timeout, "the first reported properties");

        var applied = await hub.PatchDesiredAsync(new JsonObject { ["modelPath"] = Models.TinyFp32 });
        await hub.WaitUntilAsync(h => DesiredVersion(h) == applied, Timeout, "the model patch reported");
        Assert.Equal("applied", (string?)hub.Reported["desired"]!["status"]);
        Assert.Equal(Models.TinyFp32, (string?)hub.Reported["config"]!["modelPath"]);
        Assert.Equal("tiny-fp32-42.onnx", (string?)hub.Reported["model"]);

        var rejected = await hub.PatchDesiredAsync(new JsonObject { ["modelPath"] = "/nonexistent/model.onnx", ["queueMaxJobs"] = 5 });
        await hub.WaitUntilAsync(h => DesiredVersion(h) == rejected, Timeout, "the rejected patch reported");
        Assert.Equal("rejected", (string?)hub.Reported["desired"]!["status"]);
        Assert.Contains(hub.Reported["desired"]!["errors"]!.AsArray(), e => ((string?)e)!.StartsWith("model not loaded: model file '/nonexistent/model.onnx' does not exist", StringComparison.Ordinal));
        Assert.Equal(10_000, node.Service<IOptions<QueueOptions>>().Value.MaxJobs);
        Assert.Equal(Models.TinyFp32, node.Service<ModelHost>().Info.Path);

        // Removing the desired value goes back to the configured file.
        var restored = await hub.PatchDesiredAsync(new JsonObject { ["modelPath"] = null });
        await hub.WaitUntilAsync(h => DesiredVersion(h) == restored, Timeout, "the removal reported");
        Assert.Equal(Models.TinyInt8, node.Service<ModelHost>().Info.Path);
    }

    private static long? DesiredVersion(IoTHubEmulator hub) =>
        hub.Reported["desired"]?["$version"] is JsonValue v && v.TryGetValue<long>(out var n) ? n : null;

    private static bool IsEvent(D2cMessage m, string jobId, string type) =>
        m.Properties.GetValueOrDefault("jobId") == jobId && m.Properties.GetValueOrDefault("type") == type;

    private static JsonElement Json(D2cMessage m) => JsonDocument.Parse(m.Payload).RootElement.Clone();
}
