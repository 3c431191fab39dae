package auth

import (
	"crypto/tls"
	"crypto/x509"

	"google.golang.org/grpc/credentials"
)

// ServerCredentials returns the TLS transport credentials of the xDS
// listener. getCertificate serves the current serving certificate (e.g.
// certs.Reloader.GetCertificate, so rotations apply to the next handshake);
// clientCAs returns the CAs whose client certificates prove an identity
// (Sluice's own, current and previous), or nil to accept none. A client
// certificate is optional: a client may prove itself with a token instead.
func ServerCredentials(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error), clientCAs func() *x509.CertPool) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCertificate,
		// Per handshake, so that a rotated CA is trusted at once.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: getCertificate,
				// The config replaces the one credentials.NewTLS
				// completed, so it names HTTP/2 itself.
				NextProtos: []string{"h2"},
			}
			if pool := clientCAs(); pool != nil {
				cfg.ClientAuth = tls.VerifyClientCertIfGiven
				cfg.ClientCAs = pool
			}
			return cfg, nil
		},
	})
}
