using EdgeNode.Shared.Configuration;
using Microsoft.Extensions.Configuration;

namespace EdgeNode.Shared.Tests.Configuration;

/// <summary>The binder's own errors (real ConfigurationBinder) become one line naming Section:Key.</summary>
public sealed class ConfigurationErrorsTests
{
    [Fact]
    public void Describe_UnknownKeysFromTheBinder_NamesSectionAndKeys()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Relay:Urll"] = "x",
            ["Relay:MaxBody"] = "1",
        }).Build();

        var ex = Assert.Throws<InvalidOperationException>(() =>
            config.GetSection("Relay").Get<RelayOptions>(o => o.ErrorOnUnknownConfiguration = true));

        Assert.True(ConfigurationErrors.IsBindingError(ex));
        Assert.StartsWith("unknown key Relay:MaxBody, Relay:Urll (", ConfigurationErrors.Describe(ex.Message), StringComparison.Ordinal);
    }

    [Fact]
    public void Describe_OtherMessage_Unchanged()
    {
        const string message = "Failed to convert configuration value 'abc' at 'Queue:MaxJobs' to type 'System.Int32'.";
        Assert.Equal(message, ConfigurationErrors.Describe(message));
    }

    private sealed class RelayOptions
    {
        public string Url { get; set; } = "";
    }
}
