using System.Net;
using System.Text.Json;
using EdgeNode.Shared.Offload;

namespace EdgeNode.CloudRelay.Tests.Auth;

/// <summary>Device authentication over real HTTP: SAS tokens accepted and refused (DESIGN.md §6).</summary>
[Collection(RelayCollection.Name)]
public sealed class DeviceAuthTests(RelayFixture fixture) : IClassFixture<RelayFixture>
{
    private const string Job = """{"prompt":"Hello","max_new_tokens":2,"seed":7,"temperature":0}""";

    private RelayHost Relay => fixture.Relay;

    [Fact]
    public async Task Post_GoodToken_RunsTheJob()
    {
        using var response = await Relay.PostAsync(Job, RelayHost.Token());

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("result", json.RootElement.GetProperty("type").GetString());
        Assert.Equal("relay", json.RootElement.GetProperty("executed_on").GetString());
    }

    [Fact]
    public async Task Post_TokenWithoutSkn_FindsTheDeviceInTheResource()
    {
        var token = SharedAccessSignature.Create(SharedAccessSignature.DeviceResource("edgenode-relay", RelayHost.Device),
            RelayHost.DeviceKey, DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds());

        using var response = await Relay.PostAsync(Job, token);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Post_ExpiredToken_Is401()
    {
        var before = await Relay.MetricAsync("edgenode_relay_auth_failures_total{reason=\"expired\"}");

        using var response = await Relay.PostAsync(Job, RelayHost.Token(expiry: DateTimeOffset.UtcNow.AddSeconds(-10).ToUnixTimeSeconds()));

        await AssertUnauthorizedAsync(response);
        Assert.Equal(before + 1, await Relay.MetricAsync("edgenode_relay_auth_failures_total{reason=\"expired\"}"));
    }

    [Fact]
    public async Task Post_TokenSignedWithAnotherKey_Is401()
    {
        using var response = await Relay.PostAsync(Job, RelayHost.Token(key: RelayHost.OtherKey));

        await AssertUnauthorizedAsync(response);
    }

    [Fact]
    public async Task Post_AnotherDevicesTokenUnderThisDevicesName_Is401()
    {
        // Signed correctly by gw-2, but claiming to be gw-1 in skn: the key of gw-1 does not verify it.
        var forged = SharedAccessSignature.Create(SharedAccessSignature.DeviceResource("edgenode-relay", RelayHost.Device),
            RelayHost.OtherKey, DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds(), RelayHost.Device);

        using var response = await Relay.PostAsync(Job, forged);

        await AssertUnauthorizedAsync(response);
    }

    [Fact]
    public async Task Post_UnknownDevice_Is401()
    {
        var before = await Relay.MetricAsync("edgenode_relay_auth_failures_total{reason=\"unknown_device\"}");

        using var response = await Relay.PostAsync(Job, RelayHost.Token(device: "gw-unknown"));

        await AssertUnauthorizedAsync(response);
        Assert.Equal(before + 1, await Relay.MetricAsync("edgenode_relay_auth_failures_total{reason=\"unknown_device\"}"));
    }

    [Fact]
    public async Task Post_TamperedSignature_Is401()
    {
        var token = RelayHost.Token();
        var at = token.IndexOf("sig=", StringComparison.Ordinal) + 4;
        var tampered = token[..at] + (token[at] == 'A' ? 'B' : 'A') + token[(at + 1)..];

        using var response = await Relay.PostAsync(Job, tampered);

        await AssertUnauthorizedAsync(response);
    }

    [Fact]
    public async Task Post_ExpiryExtendedAfterSigning_Is401()
    {
        var se = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds();
        var token = RelayHost.Token(expiry: se).Replace("se=" + se, "se=" + (se + 86400), StringComparison.Ordinal);

        using var response = await Relay.PostAsync(Job, token);

        await AssertUnauthorizedAsync(response);
    }

    [Fact]
    public async Task Post_TokenForAnotherAudience_Is401()
    {
        var token = SharedAccessSignature.Create(SharedAccessSignature.DeviceResource("other-service", RelayHost.Device),
            RelayHost.DeviceKey, DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds(), RelayHost.Device);

        using var response = await Relay.PostAsync(Job, token);

        await AssertUnauthorizedAsync(response);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer abc")]
    [InlineData("SharedAccessSignature sr=x&se=1")]
    [InlineData("SharedAccessSignature sr=edgenode-relay%2Fdevices%2Fgw-1&sig=AAAA&se=notanumber&skn=gw-1")]
    public async Task Post_MissingOrMalformedToken_Is401(string? authorization)
    {
        using var response = await Relay.PostAsync(Job, authorization);

        await AssertUnauthorizedAsync(response);
    }

    private static async Task AssertUnauthorizedAsync(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("SharedAccessSignature", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("unauthorized", json.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.False(json.RootElement.TryGetProperty("type", out _), "a refusal is not a job event");
    }
}
