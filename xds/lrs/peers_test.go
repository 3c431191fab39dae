package lrs

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sluice-dev/sluice/certs"
)

// issue returns a fresh CA with a serving certificate, as Sluice's Secret
// holds them; with ca set, the new certificate is signed by ca's CA.
func issue(t *testing.T, ca *certs.Bundle) *certs.Bundle {
	t.Helper()
	req := certs.IssueRequest{DNSNames: []string{"sluice-xds.sluice-system.svc"}}
	if ca != nil {
		req.Existing = &certs.Bundle{CACert: ca.CACert, CAKey: ca.CAKey}
	}
	b, err := certs.Issue(req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// peerTLS is the peer channel's TLS over bundle's serving certificate.
func peerTLS(t *testing.T, b *certs.Bundle) *certs.PeerTLS {
	t.Helper()
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &certs.PeerTLS{Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }}
}

// listenPeer serves agg's forwarding endpoint as the peer listener does:
// mutual TLS with Sluice's certificate, callers acting as proven replicas.
func listenPeer(t *testing.T, p *certs.PeerTLS, agg *Aggregator) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(p.ServerCredentials()), grpc.UnaryInterceptor(asPeer))
	RegisterForwarding(g, agg)
	go g.Serve(l) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)
	return l.Addr().String()
}

// Three replicas forwarding to each other over the mutual-TLS peer channel:
// each ends up with the sum of all three, per origin, and a replica never
// forwards to itself.
func TestPeersShareTotals(t *testing.T) {
	const n = 3
	own := peerTLS(t, issue(t, nil))
	aggs := make([]*Aggregator, n)
	addrs := make([]string, n)
	for i := range n {
		aggs[i] = NewAggregator()
		addrs[i] = listenPeer(t, own, aggs[i])
	}
	frontend := Origin{Class: ClassAuthenticated, Identity: "token:web/frontend"}
	old := Origin{Class: ClassLegacy, Identity: "legacy:shop"}
	for i := range n {
		aggs[i].add(1, frontend, canary, Totals{Requests: uint64(10 * (i + 1)), Errors: uint64(i + 1)})
		aggs[i].add(2, old, canary, Totals{Requests: 5})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range n {
		p := &Peers{
			Aggregator:  aggs[i],
			Resolve:     func(context.Context) ([]string, error) { return addrs, nil },
			Self:        addrs[i],
			Source:      addrs[i],
			Credentials: own.ClientCredentials(),
			Interval:    10 * time.Millisecond,
			Logger:      testr.New(t),
		}
		go func() {
			if err := p.Start(ctx); err != nil {
				t.Errorf("peers %d: %v", i, err)
			}
		}()
	}
	want := ByOrigin{frontend: {Requests: 60, Errors: 6}, old: {Requests: 15}}
	for i := range n {
		eventually(t, "every replica holds the sum", func() bool { return cmp.Equal(aggs[i].Origins()[canary], want) })
		if got := aggs[i].Local()[canary]; got.Requests != uint64(10*(i+1)+5) {
			t.Errorf("replica %d local totals %+v changed by forwarding", i, got)
		}
		for _, s := range aggs[i].Sources() {
			if s == addrs[i] {
				t.Errorf("replica %d received its own totals", i)
			}
		}
	}
}

// TestPeerListenerRefusesStrangers plays callers of the peer listener that
// are not Sluice: one without a certificate, one with a certificate that
// Sluice's own CA signed (as it signs proxies' client certificates), one
// with a certificate of another CA, and one without TLS. Each is refused
// in the handshake; the same forward with Sluice's own certificate merges.
func TestPeerListenerRefusesStrangers(t *testing.T) {
	sluice := issue(t, nil)
	own := peerTLS(t, sluice)
	leader := NewAggregator()
	addr := listenPeer(t, own, leader)
	forged := encodeForward("forger", map[Key]ByOrigin{canary: {Origin{Class: ClassAuthenticated, Identity: "token:shop/x"}: {Requests: 1000, Errors: 1000}}})

	strangers := map[string]credentials.TransportCredentials{
		"no client certificate":      credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}), //nolint:gosec // the attacker's choice
		"certificate of Sluice's CA": peerTLS(t, issue(t, sluice)).ClientCredentials(),
		"certificate of another CA":  peerTLS(t, issue(t, nil)).ClientCredentials(),
		"plaintext":                  insecure.NewCredentials(),
	}
	for name, creds := range strangers {
		t.Run(name, func(t *testing.T) {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := conn.Invoke(ctx, ForwardMethod, forged, &emptypb.Empty{}); err == nil {
				t.Fatal("Forward succeeded, want the handshake refused")
			}
		})
	}
	if len(leader.Totals()) != 0 {
		t.Fatalf("refused callers changed the leader: %v", leader.Totals())
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(own.ClientCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Invoke(context.Background(), ForwardMethod, forged, &emptypb.Empty{}); err != nil {
		t.Fatalf("Forward with Sluice's certificate: %v", err)
	}
	if diff := cmp.Diff(map[Key]Totals{canary: {Requests: 1000, Errors: 1000}}, leader.Totals()); diff != "" {
		t.Fatalf("leader totals after a replica's forward (-want +got):\n%s", diff)
	}
}

// A client that dials a server presenting another certificate (a replica
// impostor) refuses it: the client side checks the server too.
func TestPeerClientRefusesImpostor(t *testing.T) {
	impostor := NewAggregator()
	addr := listenPeer(t, peerTLS(t, issue(t, nil)), impostor)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(peerTLS(t, issue(t, nil)).ClientCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = (&Forwarder{Aggregator: NewAggregator(), Conn: conn, Source: "b"}).Forward(ctx)
	if err == nil || !strings.Contains(err.Error(), "Sluice's own serving certificate") {
		t.Fatalf("Forward to an impostor: error = %v, want the handshake refused naming the certificate", err)
	}
}

func TestPeersNeedTheirParts(t *testing.T) {
	resolve := func(context.Context) ([]string, error) { return nil, nil }
	for name, p := range map[string]*Peers{
		"no aggregator":  {Resolve: resolve, Source: "a", Credentials: insecure.NewCredentials()},
		"no resolver":    {Aggregator: NewAggregator(), Source: "a", Credentials: insecure.NewCredentials()},
		"no source":      {Aggregator: NewAggregator(), Resolve: resolve, Credentials: insecure.NewCredentials()},
		"no credentials": {Aggregator: NewAggregator(), Resolve: resolve, Source: "a"},
	} {
		if err := p.Start(context.Background()); err == nil {
			t.Errorf("%s: Start succeeded, want an error", name)
		}
	}
}
