using EdgeNode.CloudRelay.Cli;

return await RelayCommands.Create().Parse(args).InvokeAsync();
