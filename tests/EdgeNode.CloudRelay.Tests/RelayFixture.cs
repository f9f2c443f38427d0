namespace EdgeNode.CloudRelay.Tests;

/// <summary>One embedded-backend relay shared by the tests of a class (default configuration).</summary>
public sealed class RelayFixture : IAsyncLifetime
{
    internal RelayHost Relay { get; private set; } = null!;

    public async Task InitializeAsync() => Relay = await RelayHost.StartAsync();

    public async Task DisposeAsync() => await Relay.DisposeAsync();
}
