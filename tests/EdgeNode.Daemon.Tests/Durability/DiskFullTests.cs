using System.Text;
using System.Text.Json;
using EdgeNode.Shared.Jobs;
using EdgeNode.TestSupport;

namespace EdgeNode.Daemon.Tests.Durability;

/// <summary>
/// ../shared/cases/durability.md 4 (disk full) on a real filesystem: the daemon's state directory on a small tmpfs
/// that a filler file fills up. (The store-level variants with injected ENOSPC are in Queue/JobStoreDiskFullTests.)
/// </summary>
[Collection("Daemon")]
public sealed class DiskFullTests
{
    private static readonly TimeSpan Timeout = NodeProcess.Timeout;

    [Fact]
    public async Task StateOnFullTmpfs_NewJobsGetStorageErrorAtOnce_AcceptedJobsKeepDataAndFinish_AcceptanceResumesWhenSpaceReturns()
    {
        using var tmpfs = TmpfsMount.Create(sizeMiB: 16);
        await using var broker = await Mosquitto.StartAsync();
        // Decode slowed by the test hook: the accepted jobs are still queued or running when the disk fills up, so they
        // have to finish across the full disk, however fast the machine is.
        await using var node = new NodeProcess(Path.Combine(tmpfs.Path, "state"), broker.Port, "diskfull") { DecodeStepDelayMs = 100 };
        await node.StartReadyAsync();
        await using var device = await DeviceClient.ConnectAsync(broker.Port, "diskfull");
        var before = new[] { "before-1", "before-2", "before-3" };
        foreach (var id in before)
        {
            await device.PublishJobAsync(id, Job(id));
        }

        await device.WaitUntilAsync(d => before.All(d.Accepted.Contains), "accepted events of the jobs sent before the disk filled", Timeout);

        var filler = tmpfs.Fill();
        var during = new[] { "during-1", "during-2" };
        foreach (var id in during)
        {
            await device.PublishJobAsync(id, Job(id));
        }

        // "At once": the error arrives while the disk is still full, not once space returns.
        await device.WaitForFinalsAsync(during, Timeout);
        foreach (var id in during)
        {
            var (type, status, code) = Parse(device.FinalText(id));
            Assert.Equal(("error", JobStatuses.Rejected, JobErrorCodes.Storage), (type, status, code));
            Assert.DoesNotContain(id, device.Accepted);
        }

        Assert.False(node.Current.Exited.IsCompleted, "the node must stay up on a full disk");

        File.Delete(filler);
        await device.PublishJobAsync("after-1", Job("after-1"));
        var finished = before.Append("after-1").ToArray();
        await device.WaitForFinalsAsync(finished, Timeout);
        await node.StopAsync();

        foreach (var id in finished)
        {
            Assert.Equal(("result", JobStatuses.Succeeded, (string?)null), Parse(device.FinalText(id)));
        }

        using var store = node.OpenStore();
        foreach (var id in finished)
        {
            var job = store.Get(id);
            Assert.NotNull(job);
            Assert.Equal(JobStatuses.Succeeded, job.Status);
            Assert.Equal("Hold on " + id, job.Request.Prompt);
        }

        Assert.All(during, id => Assert.Null(store.Get(id))); // refused, not half-stored
    }

    private static string Job(string id) =>
        $$"""{"id":"{{id}}","prompt":"Hold on {{id}}","max_new_tokens":6}""";

    private static (string? Type, string? Status, string? Code) Parse(string json)
    {
        using var doc = JsonDocument.Parse(Encoding.UTF8.GetBytes(json));
        var root = doc.RootElement;
        var code = root.TryGetProperty("error", out var error) ? error.GetProperty("code").GetString() : null;
        return (root.GetProperty("type").GetString(), root.GetProperty("status").GetString(), code);
    }
}
