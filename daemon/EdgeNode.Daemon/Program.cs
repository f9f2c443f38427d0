using System.CommandLine;
using EdgeNode.Daemon.Cli;

var root = new RootCommand("EdgeNode: an edge runtime that takes GPT-2 text-generation jobs over MQTT, keeps them in a durable queue and runs them with ONNX Runtime.")
{
    RunCommand.Create(),
    DemoCommand.Create(),
    SubmitCommand.Create(),
    GenerateCommand.Create(),
    ModelCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
