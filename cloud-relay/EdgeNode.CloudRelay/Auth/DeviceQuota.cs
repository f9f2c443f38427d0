using System.Threading.RateLimiting;
using EdgeNode.CloudRelay.Options;
using Microsoft.Extensions.Options;

namespace EdgeNode.CloudRelay.Auth;

/// <summary>
/// Per-device request quota: a fixed one-minute window of <c>RequestsPerMinute</c> permits per device
/// (System.Threading.RateLimiting's partitioned <see cref="FixedWindowRateLimiter"/>, no queueing). A device over
/// its quota gets 429 with <c>Retry-After</c> = the time until its window resets, rounded up to whole seconds.
/// </summary>
internal sealed class DeviceQuota : IDisposable
{
    private readonly PartitionedRateLimiter<string> _limiter;

    public DeviceQuota(IOptions<RelayOptions> options)
    {
        var relay = options.Value;
        _limiter = PartitionedRateLimiter.Create<string, string>(device => RateLimitPartition.GetFixedWindowLimiter(device, id =>
            new FixedWindowRateLimiterOptions
            {
                PermitLimit = relay.Devices.TryGetValue(id, out var d) && d.RequestsPerMinute is { } n ? n : relay.DefaultRequestsPerMinute,
                Window = TimeSpan.FromMinutes(1),
                QueueLimit = 0,
                AutoReplenishment = true,
            }));
    }

    /// <summary>Takes one permit for <paramref name="deviceId"/>; null when granted, else the time to wait.</summary>
    public TimeSpan? TryTake(string deviceId)
    {
        using var lease = _limiter.AttemptAcquire(deviceId);
        if (lease.IsAcquired)
        {
            return null;
        }

        return lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : TimeSpan.FromMinutes(1);
    }

    public void Dispose() => _limiter.Dispose();
}
