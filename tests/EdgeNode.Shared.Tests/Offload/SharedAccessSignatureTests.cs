using EdgeNode.Shared.Offload;

namespace EdgeNode.Shared.Tests.Offload;

public sealed class SharedAccessSignatureTests
{
    private static readonly byte[] Key = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeSeconds(1_599_999_000);

    [Fact]
    public void Create_IoTHubDeviceResource_MatchesAnIndependentHmacComputation()
    {
        // Expected signature computed with Python's hmac/hashlib over
        // "myhub.azure-devices.net%2Fdevices%2Fdevice1\n1600000000" (notes/iothub.md token structure).
        var token = SharedAccessSignature.Create("myhub.azure-devices.net/devices/device1", Key, 1_600_000_000);

        Assert.Equal("SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1" +
                     "&sig=S7PY5lAlTVTZgVLvvxA7gaFP6sXo85BPvTQ5HplMudM%3D&se=1600000000", token);
    }

    [Fact]
    public void TryParse_CreatedToken_RoundTripsEveryField()
    {
        var token = SharedAccessSignature.Create("edgenode-relay/devices/gw 7", Key, 1_600_000_000, "gw 7");

        Assert.True(SharedAccessSignature.TryParse(token, out var parsed));
        Assert.Equal("edgenode-relay/devices/gw 7", parsed.Resource);
        Assert.Equal(1_600_000_000, parsed.Expiry);
        Assert.Equal("gw 7", parsed.KeyName);
        Assert.Equal(SasValidation.Valid, SharedAccessSignature.Validate(parsed, Key, "edgenode-relay/devices/gw 7", Now));
    }

    [Fact]
    public void TryParse_FieldsInAnotherOrder_Parses()
    {
        var sig = Uri.EscapeDataString(SharedAccessSignature.Sign(Key, "r", 1_600_000_000));

        Assert.True(SharedAccessSignature.TryParse($"SharedAccessSignature se=1600000000&skn=d&sig={sig}&sr=r", out var parsed));
        Assert.Equal(SasValidation.Valid, SharedAccessSignature.Validate(parsed, Key, "r", Now));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("Bearer x")]
    [InlineData("SharedAccessSignature")]
    [InlineData("SharedAccessSignature sr=r&sig=s")]
    [InlineData("SharedAccessSignature sr=r&se=1")]
    [InlineData("SharedAccessSignature sig=s&se=1")]
    [InlineData("SharedAccessSignature sr=r&sig=s&se=-1")]
    [InlineData("SharedAccessSignature sr=r&sig=s&se=1e9")]
    [InlineData("SharedAccessSignature sr=r&sig=s&se=1&se=2")]
    [InlineData("SharedAccessSignature sr=r&sig=s&se=1&junk")]
    public void TryParse_Malformed_IsFalse(string? value) =>
        Assert.False(SharedAccessSignature.TryParse(value, out _));

    [Fact]
    public void Validate_ExpiredToken_IsExpired()
    {
        Assert.True(SharedAccessSignature.TryParse(SharedAccessSignature.Create("r", Key, Now.ToUnixTimeSeconds()), out var token));

        Assert.Equal(SasValidation.Expired, SharedAccessSignature.Validate(token!, Key, "r", Now));
    }

    [Fact]
    public void Validate_WrongKey_IsBadSignature()
    {
        Assert.True(SharedAccessSignature.TryParse(SharedAccessSignature.Create("r", Key, 1_600_000_000), out var token));

        Assert.Equal(SasValidation.BadSignature, SharedAccessSignature.Validate(token!, [.. Key.Reverse()], "r", Now));
    }

    [Fact]
    public void Validate_ExpiryChangedAfterSigning_IsBadSignature()
    {
        var text = SharedAccessSignature.Create("r", Key, 1_600_000_000).Replace("se=1600000000", "se=1700000000", StringComparison.Ordinal);
        Assert.True(SharedAccessSignature.TryParse(text, out var token));

        Assert.Equal(SasValidation.BadSignature, SharedAccessSignature.Validate(token!, Key, "r", Now));
    }

    [Fact]
    public void Validate_SignatureNotBase64OrWrongLength_IsBadSignature()
    {
        Assert.True(SharedAccessSignature.TryParse("SharedAccessSignature sr=r&sig=%%%&se=1600000000", out var notBase64));
        Assert.True(SharedAccessSignature.TryParse("SharedAccessSignature sr=r&sig=AAAA&se=1600000000", out var tooShort));

        Assert.Equal(SasValidation.BadSignature, SharedAccessSignature.Validate(notBase64!, Key, "r", Now));
        Assert.Equal(SasValidation.BadSignature, SharedAccessSignature.Validate(tooShort!, Key, "r", Now));
    }

    [Fact]
    public void Validate_OtherResource_IsWrongResource()
    {
        Assert.True(SharedAccessSignature.TryParse(SharedAccessSignature.Create("other/devices/d", Key, 1_600_000_000), out var token));

        Assert.Equal(SasValidation.WrongResource, SharedAccessSignature.Validate(token!, Key, "edgenode-relay/devices/d", Now));
    }
}
