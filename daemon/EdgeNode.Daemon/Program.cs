using System.CommandLine;
using EdgeNode.Daemon.Cli;

var root = new RootCommand("EdgeNode: an edge runtime that takes GPT-2 text-generation jobs over MQTT, keeps them in a durable queue and runs them with ONNX Runtime.")
{
    RunCommand.Create(),
    DemoCommand.Create(),
    SubmitCommand.Create(),
    GenerateCommand.Create(),
    ModelCommand.Create(),
    IoTHubCommand.Create(),
};
var parseResult = root.Parse(args);
if (parseResult.Errors.Count > 0)
{
    // Usage errors exit 2 (like other Unix tools), with System.CommandLine's messages.
    foreach (var error in parseResult.Errors)
    {
        await Console.Error.WriteLineAsync("edgenode: " + error.Message);
    }

    await Console.Error.WriteLineAsync("Try 'edgenode --help'.");
    return 2;
}

return await parseResult.InvokeAsync();
