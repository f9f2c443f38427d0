using EdgeNode.Shared.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

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

    [Theory]
    [InlineData("MaxJobs", "abc", "Queue:MaxJobs: 'abc' is not an integer")]
    [InlineData("Ratio", "high", "Queue:Ratio: 'high' is not a number")]
    [InlineData("Enabled", "yes please", "Queue:Enabled: 'yes please' is not true or false")]
    [InlineData("Retention", "a day", "Queue:Retention: 'a day' is not a duration such as 00:00:30 (hh:mm:ss)")]
    public void Describe_ValueTheBinderCannotConvert_NamesKeyValueAndKindWithoutDotNetTypeNames(string key, string value, string expected)
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Queue:" + key] = value }).Build();

        var ex = Assert.Throws<InvalidOperationException>(() => config.GetSection("Queue").Get<QueueOptions>());

        Assert.True(ConfigurationErrors.IsBindingError(ex));
        Assert.Equal(expected, ConfigurationErrors.Describe(ex.Message));
    }

    [Fact]
    public void Describe_OtherMessage_Unchanged()
    {
        const string message = "Something else went wrong at 'Queue:MaxJobs'.";
        Assert.Equal(message, ConfigurationErrors.Describe(message));
    }

    [Fact]
    public void DescribeValidationFailure_DataAnnotationsFailure_NamesSectionAndKey()
    {
        var services = new ServiceCollection();
        services.AddOptions<QueueOptions>().Configure(o => o.MaxJobs = -1).ValidateDataAnnotations();
        using var provider = services.BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<QueueOptions>>().Value);

        Assert.Equal(["Queue:MaxJobs must be between 1 and 100000"], ex.Failures.Select(ConfigurationErrors.DescribeValidationFailure));
    }

    [Fact]
    public void DescribeValidationFailure_AttributeMessageNamingTheKey_NotRepeated() =>
        Assert.Equal("Mqtt:ProtocolVersion must be 5 or 3", ConfigurationErrors.DescribeValidationFailure(
            "DataAnnotation validation failed for 'MqttOptions' members: 'ProtocolVersion' with the error: 'Mqtt:ProtocolVersion must be 5 or 3.'."));

    [Fact]
    public void DescribeValidationFailure_OwnMessage_Unchanged() =>
        Assert.Equal("Mqtt:Port must be between 1 and 65535.", ConfigurationErrors.DescribeValidationFailure("Mqtt:Port must be between 1 and 65535."));

    private sealed class RelayOptions
    {
        public string Url { get; set; } = "";
    }

    private sealed class QueueOptions
    {
        [System.ComponentModel.DataAnnotations.Range(1, 100_000)]
        public int MaxJobs { get; set; } = 10;

        public double Ratio { get; set; }

        public bool Enabled { get; set; }

        public TimeSpan Retention { get; set; }
    }
}
