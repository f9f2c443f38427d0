using System.Text;

namespace EdgeNode.Daemon.IoTHub;

/// <summary>
/// Topic names of IoT Hub's MQTT device protocol ("Communicate with an IoT hub using the MQTT protocol",
/// learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub; DESIGN.md §7).
/// </summary>
internal sealed class IoTHubTopics(string deviceId)
{
    /// <summary>The API version named in the MQTT user name.</summary>
    public const string ApiVersion = "2021-04-12";

    /// <summary>Reserved reply-topic prefix of C2D jobs: the outbox routes events on it to the IoT Hub link as D2C.</summary>
    public const string D2cReplyPrefix = "$iothub/d2c/";

    public const string TwinResponses = "$iothub/twin/res/#";
    public const string DesiredPatches = "$iothub/twin/PATCH/properties/desired/#";
    public const string MethodRequests = "$iothub/methods/POST/#";

    /// <summary>C2D subscription, <c>devices/{id}/messages/devicebound/#</c>.</summary>
    public string CloudToDevice { get; } = "devices/" + deviceId + "/messages/devicebound/#";

    /// <summary>Prefix of received C2D topics.</summary>
    public string CloudToDevicePrefix { get; } = "devices/" + deviceId + "/messages/devicebound/";

    /// <summary>D2C topic prefix, <c>devices/{id}/messages/events/</c>; the property bag follows.</summary>
    public string EventsPrefix { get; } = "devices/" + deviceId + "/messages/events/";

    public static string TwinGet(string rid) => "$iothub/twin/GET/?$rid=" + rid;

    public static string ReportedPatch(string rid) => "$iothub/twin/PATCH/properties/reported/?$rid=" + rid;

    public static string MethodResponse(int status, string rid) => "$iothub/methods/res/" + status.ToString(System.Globalization.CultureInfo.InvariantCulture) + "/?$rid=" + rid;

    /// <summary>A D2C topic with a URL-encoded property bag; JSON routing properties <c>$.ct</c>, <c>$.ce</c> are added.</summary>
    public string Events(IEnumerable<KeyValuePair<string, string>> properties)
    {
        var sb = new StringBuilder(EventsPrefix);
        foreach (var (k, v) in properties)
        {
            sb.Append(Uri.EscapeDataString(k)).Append('=').Append(Uri.EscapeDataString(v)).Append('&');
        }

        sb.Append("$.ct=application%2Fjson&$.ce=utf-8");
        return sb.ToString();
    }

    /// <summary>
    /// Splits <c>$iothub/twin/res/{status}/?$rid={rid}[&amp;$version={v}]</c> and
    /// <c>$iothub/methods/POST/{name}/?$rid={rid}</c> style topics: the path segments and the query parameters.
    /// </summary>
    public static (string[] Segments, Dictionary<string, string> Query) Split(string topic)
    {
        var q = topic.IndexOf('?', StringComparison.Ordinal);
        var path = q < 0 ? topic : topic[..q];
        var query = new Dictionary<string, string>(StringComparer.Ordinal);
        if (q >= 0)
        {
            foreach (var pair in topic[(q + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                var key = Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq]);
                query[key] = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
            }
        }

        return (path.Split('/', StringSplitOptions.RemoveEmptyEntries), query);
    }
}
