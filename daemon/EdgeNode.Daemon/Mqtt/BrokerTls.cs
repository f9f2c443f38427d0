using System.Security.Cryptography.X509Certificates;
using EdgeNode.Daemon.Options;
using MQTTnet;

namespace EdgeNode.Daemon.Mqtt;

/// <summary>
/// TLS for the broker link: the server certificate is validated against <c>Mqtt:CaFile</c> (a custom trust
/// root: the chain must end in one of its certificates, and the host name must match) or, without it,
/// against the system trust store; <c>Mqtt:ClientCertificateFile</c> (PEM or PKCS#12) authenticates the node.
/// The file loading and the custom-root validation are shared with the IoT Hub link (<c>IoTHub:CaFile</c>,
/// <c>IoTHub:ClientCertificateFile</c>).
/// </summary>
internal static class BrokerTls
{
    /// <exception cref="InvalidOperationException">When a configured file cannot be read, naming the key.</exception>
    public static MqttClientTlsOptions Configure(MqttOptions options)
    {
        var builder = new MqttClientTlsOptionsBuilder().UseTls().WithTargetHost(options.Host);
        if (!string.IsNullOrWhiteSpace(options.CaFile))
        {
            builder.WithTrustChain(LoadRoots(options.CaFile, "Mqtt:CaFile"));
        }

        if (!string.IsNullOrWhiteSpace(options.ClientCertificateFile))
        {
            builder.WithClientCertificates([LoadClientCertificate(options.ClientCertificateFile, options.ClientKeyFile, "Mqtt:ClientCertificateFile")]);
        }

        return builder.Build();
    }

    /// <summary>Reads the PEM certificates of a CA file.</summary>
    /// <param name="file">The PEM file.</param>
    /// <param name="key">The configuration key that named it, for the error.</param>
    /// <exception cref="InvalidOperationException">The file cannot be read as PEM certificates, naming <paramref name="key"/>.</exception>
    public static X509Certificate2Collection LoadRoots(string file, string key)
    {
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(file);
        }
        catch (Exception ex) when (ex is IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{key} '{file}' cannot be read as PEM certificates: {ex.Message}", ex);
        }

        return roots;
    }

    /// <summary>Loads a client certificate with its private key: PKCS#12 (<c>.p12</c>/<c>.pfx</c>) or PEM (key in the file or in <paramref name="keyFile"/>).</summary>
    /// <param name="file">The certificate file.</param>
    /// <param name="keyFile">The PEM private key when kept apart; null when it is in <paramref name="file"/>.</param>
    /// <param name="key">The configuration key that named it, for the error.</param>
    /// <exception cref="InvalidOperationException">The file cannot be loaded, naming <paramref name="key"/> (never the key material).</exception>
    public static X509Certificate2 LoadClientCertificate(string file, string? keyFile, string key)
    {
        try
        {
            var cert = file.EndsWith(".p12", StringComparison.OrdinalIgnoreCase) || file.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase)
                ? X509CertificateLoader.LoadPkcs12FromFile(file, password: null)
                : X509Certificate2.CreateFromPemFile(file, keyFile);

            // SslStream needs the key in a form it can use on Linux: re-import as PKCS#12.
            return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), password: null);
        }
        catch (Exception ex) when (ex is IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{key} '{file}' cannot be loaded: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Validates a server certificate against custom roots only: the host name must match (SslStream's check) and the
    /// chain must end in one of <paramref name="roots"/>. Used as MQTTnet's certificate validation handler, which
    /// (unlike <c>WithTrustChain</c>) the WebSocket channel also applies.
    /// </summary>
    public static bool ValidateWithRoots(X509Certificate? certificate, System.Net.Security.SslPolicyErrors errors, X509Certificate2Collection roots)
    {
        if (certificate is null || (errors & (System.Net.Security.SslPolicyErrors.RemoteCertificateNotAvailable | System.Net.Security.SslPolicyErrors.RemoteCertificateNameMismatch)) != 0)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var server = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(server);
    }
}
