using System.Security.Cryptography.X509Certificates;
using EdgeNode.Daemon.Options;
using MQTTnet;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>
/// TLS for the broker link: the server certificate is validated against <c>Mqtt:CaFile</c> (a custom trust
/// root: the chain must end in one of its certificates, and the host name must match) or, without it,
/// against the system trust store; <c>Mqtt:ClientCertificateFile</c> (PEM or PKCS#12) authenticates the node.
/// </summary>
internal static class BrokerTls
{
    /// <exception cref="InvalidOperationException">When a configured file cannot be read, naming the key.</exception>
    public static MqttClientTlsOptions Configure(MqttOptions options)
    {
        var builder = new MqttClientTlsOptionsBuilder().UseTls().WithTargetHost(options.Host);
        if (!string.IsNullOrWhiteSpace(options.CaFile))
        {
            var roots = new X509Certificate2Collection();
            try
            {
                roots.ImportFromPemFile(options.CaFile);
            }
            catch (Exception ex) when (ex is IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException($"Mqtt:CaFile '{options.CaFile}' cannot be read as PEM certificates: {ex.Message}", ex);
            }

            builder.WithTrustChain(roots);
        }

        if (!string.IsNullOrWhiteSpace(options.ClientCertificateFile))
        {
            builder.WithClientCertificates([LoadClientCertificate(options)]);
        }

        return builder.Build();
    }

    private static X509Certificate2 LoadClientCertificate(MqttOptions options)
    {
        var file = options.ClientCertificateFile!;
        try
        {
            var cert = file.EndsWith(".p12", StringComparison.OrdinalIgnoreCase) || file.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase)
                ? X509CertificateLoader.LoadPkcs12FromFile(file, password: null)
                : X509Certificate2.CreateFromPemFile(file, options.ClientKeyFile);

            // SslStream needs the key in a form it can use on Linux: re-import as PKCS#12.
            return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), password: null);
        }
        catch (Exception ex) when (ex is IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"Mqtt:ClientCertificateFile '{file}' cannot be loaded: {ex.Message}", ex);
        }
    }
}
