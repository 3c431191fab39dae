package certs

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// peerPair is a key pair of a fresh bundle issued at now.
func peerPair(t *testing.T, existing *Bundle, now time.Time) (*Bundle, *tls.Certificate) {
	t.Helper()
	req := IssueRequest{DNSNames: []string{"sluice-xds.sluice-system.svc"}}
	if existing != nil {
		req.Existing = &Bundle{CACert: existing.CACert, CAKey: existing.CAKey}
	}
	b, err := Issue(req, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	return b, &pair
}

// peerHandshake runs a TLS handshake over a pipe between a client and a server
// configuration and returns the server's and the client's error.
func peerHandshake(server, client *tls.Config) (error, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(a, server).Handshake() }()
	cerr := tls.Client(b, client).Handshake()
	b.Close()
	return <-errc, cerr
}

// TestPeerTLSAcceptsOnlySluicesCertificate: two replicas holding Sluice's
// certificate complete the handshake; a party presenting another
// certificate of the same CA, or none, is refused by the server, and a
// server presenting another certificate is refused by the client. After a
// rotation only the new certificate opens the channel.
func TestPeerTLSAcceptsOnlySluicesCertificate(t *testing.T) {
	now := time.Now()
	b1, c1 := peerPair(t, nil, now)
	_, c2 := peerPair(t, b1, now)      // rotated: same CA, new certificate
	_, sibling := peerPair(t, b1, now) // another certificate Sluice's CA signed
	var served atomic.Pointer[tls.Certificate]
	served.Store(c1)
	own := &PeerTLS{Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return served.Load(), nil }}
	fixed := func(c *tls.Certificate) *PeerTLS {
		return &PeerTLS{Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c, nil }}
	}

	if serr, cerr := peerHandshake(own.ServerConfig(), fixed(c1).ClientConfig()); serr != nil || cerr != nil {
		t.Fatalf("replicas with Sluice's certificate: server %v, client %v", serr, cerr)
	}
	// An attacker's client presents the sibling and checks nothing itself.
	attacker := &tls.Config{Certificates: []tls.Certificate{*sibling}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the attacker's choice
	if serr, _ := peerHandshake(own.ServerConfig(), attacker); !errors.Is(serr, ErrNotSluice) {
		t.Fatalf("client with another certificate of Sluice's CA: server error %v, want ErrNotSluice", serr)
	}
	noCert := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the attacker's choice
	if serr, _ := peerHandshake(own.ServerConfig(), noCert); serr == nil {
		t.Fatal("client without a certificate: handshake succeeded")
	}
	if _, cerr := peerHandshake(fixed(sibling).ServerConfig(), own.ClientConfig()); !errors.Is(cerr, ErrNotSluice) {
		t.Fatalf("server with another certificate: client error %v, want ErrNotSluice", cerr)
	}

	// After a rotation, a peer that still presents the old certificate is
	// refused until it loads the new one.
	served.Store(c2)
	old := &tls.Config{Certificates: []tls.Certificate{*c1}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // see above
	if serr, _ := peerHandshake(own.ServerConfig(), old); !errors.Is(serr, ErrNotSluice) {
		t.Fatalf("the certificate served before the rotation: server error %v, want ErrNotSluice", serr)
	}
	if serr, cerr := peerHandshake(own.ServerConfig(), fixed(c2).ClientConfig()); serr != nil || cerr != nil {
		t.Fatalf("replicas with the rotated certificate: server %v, client %v", serr, cerr)
	}
}

// TestPeerTLSRefusesExpired: Sluice's own certificate past its validity
// does not open the channel.
func TestPeerTLSRefusesExpired(t *testing.T) {
	_, c := peerPair(t, nil, time.Now())
	p := &PeerTLS{Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c, nil },
		Now: func() time.Time { return c.Leaf.NotAfter.Add(time.Minute) }}
	if _, cerr := peerHandshake(p.ServerConfig(), p.ClientConfig()); !errors.Is(cerr, ErrNotSluice) {
		t.Fatalf("expired certificate: client error %v, want ErrNotSluice", cerr)
	}
}
