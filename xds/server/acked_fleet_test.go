package server

import (
	"context"
	"net"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/xds/auth"
)

// peerListener serves s's ProxyAcks on a loopback port; asPeer marks
// callers as replicas, as the peer listener's mutual TLS does.
func peerListener(t *testing.T, s *Server, asPeer bool) grpc.ClientConnInterface {
	t.Helper()
	var opts []grpc.ServerOption
	if asPeer {
		opts = append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(auth.NewContext(ctx, auth.Identity{Method: auth.MethodPeer, Name: "sluice"}), req)
		}))
	}
	g := grpc.NewServer(opts...)
	s.RegisterAcks(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestFleetAcksAsksTheOtherReplicas: a client's ADS stream reaches replica
// B and its load reports replica A. A's own streams never carried the
// cluster, so A asks B, which vouches for exactly what that identity
// acknowledged there, and nothing for another identity or cluster.
func TestFleetAcksAsksTheOtherReplicas(t *testing.T) {
	a, _ := authzServer(t, Options{})
	b, addrB := authzServer(t, Options{})
	publishTenants(t, a, tenants(t, nil))
	publishTenants(t, b, tenants(t, nil))
	me := auth.Identity{Method: auth.MethodToken, Namespace: "team-a", Name: "checkout-client"}
	const cluster = "team-a/checkout/9090/canary"
	c := newSotwAs(t, addrB, "proxy-team-a", me.Namespace, me.Name)
	c.request(resource.ClusterType, nil, nil, "")
	c.request(resource.ClusterType, nil, c.recv(), "")
	eventually(t, "the ACK to be indexed on B", func() bool { return b.Acknowledged(me, cluster) })

	toB := peerListener(t, b, true)
	fleet := &FleetAcks{Local: a, Peers: func(context.Context) ([]Peer, error) {
		return []Peer{{Addr: "b", Conn: toB}}, nil
	}}
	if a.Acknowledged(me, cluster) {
		t.Fatal("fixture: A itself has the ACK")
	}
	if !fleet.Acknowledged(me, cluster) {
		t.Fatal("A's fleet view misses what the identity acknowledged on B")
	}
	for _, q := range []struct {
		id      auth.Identity
		cluster string
	}{
		{auth.Identity{Method: auth.MethodToken, Namespace: "team-a", Name: "someone-else"}, cluster},
		{auth.Identity{Method: auth.MethodLegacy, Namespace: "team-a"}, cluster},
		{me, "shop/checkout/9090/canary"},
	} {
		if fleet.Acknowledged(q.id, q.cluster) {
			t.Errorf("fleet view vouches for %s on %s, which B never saw acknowledged", q.id, q.cluster)
		}
	}
	noPeers := &FleetAcks{Local: a}
	if noPeers.Acknowledged(me, cluster) {
		t.Error("without peers, A vouches for an ACK it never saw")
	}
}

// TestProxyAcksNeedsAPeer: a caller that is not a replica (any pod able to
// reach the port) learns nothing of who acknowledged what.
func TestProxyAcksNeedsAPeer(t *testing.T) {
	s, _ := authzServer(t, Options{})
	conn := peerListener(t, s, false)
	_, err := QueryAcks(context.Background(), conn, auth.Identity{Method: auth.MethodToken, Namespace: "team-a", Name: "x"}, []string{"team-a/checkout/9090/canary"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("QueryAcks without a peer identity: %v, want PermissionDenied", err)
	}
}
