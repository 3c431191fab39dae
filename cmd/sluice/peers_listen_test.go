package main

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
)

// peerTLSOf is the peer channel's TLS over bundle's serving certificate.
func peerTLSOf(t *testing.T, b *certs.Bundle) *certs.PeerTLS {
	t.Helper()
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &certs.PeerTLS{Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }}
}

// TestPeerListenerServesReplicasOnly runs the peer listener as the
// controller wires it: a replica presenting Sluice's certificate gets proxy
// sync answers and has its load merged; a client presenting another
// certificate of Sluice's CA gets neither.
func TestPeerListenerServesReplicasOnly(t *testing.T) {
	sluice, err := certs.Issue(certs.IssueRequest{DNSNames: []string{"sluice-xds.sluice-system.svc"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sibling, err := certs.Issue(certs.IssueRequest{DNSNames: []string{"sluice-xds.sluice-system.svc"},
		Existing: &certs.Bundle{CACert: sluice.CACert, CAKey: sluice.CAKey}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	own := peerTLSOf(t, sluice)
	xds := server.New(server.Options{Logger: testr.New(t), Registerer: prometheus.NewRegistry()})
	agg := lrs.NewAggregator()
	g := peerServer(own, "replica-a", xds, agg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)

	call := func(creds credentials.TransportCredentials) (syncErr, forwardErr error) {
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, syncErr = server.QuerySync(ctx, conn, []server.SyncTarget{{TypeURL: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", Name: "r", Version: "v"}})
		replica := lrs.NewAggregator()
		forwardErr = (&lrs.Forwarder{Aggregator: replica, Conn: conn, Source: "replica-b"}).Forward(ctx)
		return syncErr, forwardErr
	}
	// The attacker's client presents the sibling and checks nothing itself.
	pair, err := tls.X509KeyPair(sibling.Cert, sibling.Key)
	if err != nil {
		t.Fatal(err)
	}
	attacker := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true}) //nolint:gosec // the attacker's choice
	if s, f := call(attacker); s == nil || f == nil {
		t.Fatalf("a client with another certificate of Sluice's CA: sync error %v, forward error %v; want both refused", s, f)
	}
	if len(agg.Sources()) != 0 {
		t.Fatalf("a refused client's forward was merged: sources %v", agg.Sources())
	}
	if s, f := call(own.ClientCredentials()); s != nil || f != nil {
		t.Fatalf("a replica with Sluice's certificate: sync error %v, forward error %v", s, f)
	}
	if got := agg.Sources(); len(got) != 1 || got[0] != "replica-b" {
		t.Fatalf("merged sources %v, want the replica's", got)
	}
}

func TestResolvePeers(t *testing.T) {
	o := controllerOptions{peers: "127.0.0.1:7001, 127.0.0.1:7002,localhost", peerPort: 18001, podIP: "127.0.0.1"}
	resolve, self := o.resolvePeers()
	got, err := resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if self != "127.0.0.1:18001" {
		t.Errorf("self = %q, want 127.0.0.1:18001", self)
	}
	if len(got) < 3 || got[0] != "127.0.0.1:7001" || got[1] != "127.0.0.1:7002" {
		t.Fatalf("peers = %v, want the two addresses as given, then localhost's IPs at --peer-port", got)
	}
	for _, a := range got[2:] {
		if _, port, err := net.SplitHostPort(a); err != nil || port != "18001" {
			t.Errorf("resolved peer %q: want --peer-port 18001 (%v)", a, err)
		}
	}
}
