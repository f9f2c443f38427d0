using YamlDotNet.RepresentationModel;

namespace EdgeNode.Packaging.Tests;

/// <summary>
/// The relay's container build and Kubernetes manifests cannot run here (no container engine, no cluster):
/// they are parsed and checked for the fields that make the deployment work together.
/// </summary>
public sealed class RelayDeploymentTests
{
    private static readonly Dictionary<string, YamlMappingNode> Manifests = LoadManifests();

    [Fact]
    public void Kustomization_ListsEveryManifest()
    {
        var kustomization = Load(Repo.Path("packaging/k8s/kustomization.yaml")).Single();
        var listed = Seq(kustomization, "resources").Select(n => ((YamlScalarNode)n).Value).ToHashSet();
        var files = Directory.GetFiles(Repo.Path("packaging/k8s"), "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml");
        Assert.Equal(files.Order(), listed.Order());
    }

    [Fact]
    public void Deployment_ProbesOnReadyzAndHealthz_OnTheContainerPort()
    {
        var deployment = Manifests["Deployment"];
        Assert.Equal("apps/v1", Str(deployment, "apiVersion"));
        var spec = Map(deployment, "spec");
        var selector = Map(Map(spec, "selector"), "matchLabels");
        var template = Map(spec, "template");
        var podLabels = Map(Map(template, "metadata"), "labels");
        foreach (var (k, v) in selector.Children)
        {
            Assert.Equal(((YamlScalarNode)v).Value, Str(podLabels, ((YamlScalarNode)k).Value!));
        }

        var container = (YamlMappingNode)Seq(Map(template, "spec"), "containers").Single();
        var port = (YamlMappingNode)Seq(container, "ports").Single();
        Assert.Equal("http", Str(port, "name"));
        Assert.Equal("8080", Str(port, "containerPort"));
        Assert.Contains("--Relay:Url=http://0.0.0.0:8080", Seq(container, "args").Select(a => ((YamlScalarNode)a).Value));

        var readiness = Map(Map(container, "readinessProbe"), "httpGet");
        Assert.Equal("/readyz", Str(readiness, "path"));
        Assert.Equal("http", Str(readiness, "port"));
        var liveness = Map(Map(container, "livenessProbe"), "httpGet");
        Assert.Equal("/healthz", Str(liveness, "path"));
        Assert.Equal("http", Str(liveness, "port"));

        // The HPA's CPU utilisation is relative to the request: it must be set.
        Assert.NotNull(Str(Map(Map(container, "resources"), "requests"), "cpu"));
        var security = Map(container, "securityContext");
        Assert.Equal("false", Str(security, "allowPrivilegeEscalation"));
        Assert.Equal("true", Str(security, "readOnlyRootFilesystem"));
        Assert.Equal("true", Str(Map(Map(template, "spec"), "securityContext"), "runAsNonRoot"));
    }

    [Fact]
    public void Service_SelectsThePods_AndTargetsTheNamedPort()
    {
        var service = Manifests["Service"];
        var spec = Map(service, "spec");
        var podLabels = Map(Map(Map(Map(Manifests["Deployment"], "spec"), "template"), "metadata"), "labels");
        foreach (var (k, v) in Map(spec, "selector").Children)
        {
            Assert.Equal(((YamlScalarNode)v).Value, Str(podLabels, ((YamlScalarNode)k).Value!));
        }

        var port = (YamlMappingNode)Seq(spec, "ports").Single();
        Assert.Equal("http", Str(port, "targetPort"));
    }

    [Fact]
    public void HorizontalPodAutoscaler_ScalesTheDeploymentOnCpu()
    {
        var hpa = Manifests["HorizontalPodAutoscaler"];
        Assert.Equal("autoscaling/v2", Str(hpa, "apiVersion"));
        var spec = Map(hpa, "spec");
        var target = Map(spec, "scaleTargetRef");
        Assert.Equal("Deployment", Str(target, "kind"));
        Assert.Equal(Str(Map(Manifests["Deployment"], "metadata"), "name"), Str(target, "name"));
        var min = int.Parse(Str(spec, "minReplicas")!, System.Globalization.CultureInfo.InvariantCulture);
        var max = int.Parse(Str(spec, "maxReplicas")!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(min, 2, max - 1);
        var metric = (YamlMappingNode)Seq(spec, "metrics").Single();
        Assert.Equal("cpu", Str(Map(metric, "resource"), "name"));
    }

    [Fact]
    public void Dockerfile_NonRootRelayOnTheDeploymentsPort()
    {
        var lines = File.ReadAllLines(Repo.Path("cloud-relay/Dockerfile")).Select(l => l.Trim()).ToList();
        Assert.Contains("EXPOSE 8080", lines);
        Assert.Contains("ENTRYPOINT [\"/app/edgenode-relay\"]", lines);
        Assert.Contains("CMD [\"--Relay:Url=http://0.0.0.0:8080\"]", lines);
        Assert.Contains(lines, l => l.StartsWith("USER ", StringComparison.Ordinal) && l != "USER root" && l != "USER 0");
        Assert.Contains(lines, l => l.StartsWith("RUN dotnet publish cloud-relay/EdgeNode.CloudRelay/EdgeNode.CloudRelay.csproj", StringComparison.Ordinal));
    }

    private static Dictionary<string, YamlMappingNode> LoadManifests() =>
        Directory.GetFiles(Repo.Path("packaging/k8s"), "relay-*.yaml").SelectMany(Load).ToDictionary(d => Str(d, "kind")!);

    private static IEnumerable<YamlMappingNode> Load(string path)
    {
        using var reader = new StreamReader(path);
        var stream = new YamlStream();
        stream.Load(reader);
        return stream.Documents.Select(d => (YamlMappingNode)d.RootNode);
    }

    private static YamlMappingNode Map(YamlMappingNode node, string key) => (YamlMappingNode)node.Children[new YamlScalarNode(key)];

    private static YamlSequenceNode Seq(YamlMappingNode node, string key) => (YamlSequenceNode)node.Children[new YamlScalarNode(key)];

    private static string? Str(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var value) ? ((YamlScalarNode)value).Value : null;
}
