package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/credentials"
)

// PeerTLS secures the channel between Sluice's replicas (load forwarding and
// proxy sync). Both ends present Sluice's own serving certificate and each
// accepts only a party that presents that very certificate, the one it
// serves now. The handshake proves possession of the certificate's key,
// which only the Secret holds, so no other certificate Sluice's CA ever
// signed (client certificates for proxies included) opens the channel.
//
// After a rotation, two replicas refuse each other until both loaded the new
// certificate (seconds: both watch the same Secret). Peer calls are retried
// every round and forwarded totals are cumulative, so nothing is lost; a
// step confirmation waits for the next round.
type PeerTLS struct {
	// Certificate returns the serving certificate now, as
	// Reloader.GetCertificate does.
	Certificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Now is the clock certificates are checked against; nil means
	// time.Now.
	Now func() time.Time
}

// ErrNotSluice is returned (wrapped) by a handshake with a party that does
// not present Sluice's own certificate.
var ErrNotSluice = errors.New("peer does not present Sluice's own serving certificate")

// own returns the certificate served now.
func (p *PeerTLS) own() (*tls.Certificate, error) {
	if p.Certificate == nil {
		return nil, errors.New("peer TLS: no Certificate source")
	}
	c, err := p.Certificate(nil)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: own certificate: %w", err)
	}
	if c == nil || len(c.Certificate) == 0 {
		return nil, errors.New("peer TLS: own certificate is empty")
	}
	return c, nil
}

// verify accepts a presented chain whose leaf is Sluice's current
// certificate and has not expired.
func (p *PeerTLS) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: no certificate presented", ErrNotSluice)
	}
	own, err := p.own()
	if err != nil {
		return err
	}
	if !bytes.Equal(raw[0], own.Certificate[0]) {
		return ErrNotSluice
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: its validity %s..%s does not cover now", ErrNotSluice,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// ServerConfig is the TLS configuration of the peer listener: it serves
// Sluice's certificate and requires the client to present it too.
func (p *PeerTLS) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		GetCertificate:        func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.own() },
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: p.verify,
	}
}

// ClientConfig is the TLS configuration of a connection to a peer: it
// presents Sluice's certificate and accepts only a server presenting it.
// Chain and host name checks are replaced by that exact comparison (peers
// are dialled by pod IP, which the certificate does not name).
func (p *PeerTLS) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return p.own() },
		// The server's certificate is checked by VerifyPeerCertificate
		// against Sluice's own, which is stricter than a chain check.
		InsecureSkipVerify:    true, //nolint:gosec // see VerifyPeerCertificate
		VerifyPeerCertificate: p.verify,
	}
}

// ServerCredentials are ServerConfig as gRPC server credentials.
func (p *PeerTLS) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(p.ServerConfig())
}

// ClientCredentials are ClientConfig as gRPC client credentials.
func (p *PeerTLS) ClientCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(p.ClientConfig())
}
