package server

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/lrs"
)

// slowPeerListener serves s's ProxyAcks as peerListener does, except that
// every question waits until release is closed; asked counts them.
func slowPeerListener(t *testing.T, s *Server, release <-chan struct{}, asked *atomic.Int64) grpc.ClientConnInterface {
	t.Helper()
	g := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		asked.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return h(auth.NewContext(ctx, auth.Identity{Method: auth.MethodPeer, Name: "sluice"}), req)
	}))
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

// loadServer serves load reporting that asks acks, behind the stand-in
// authentication, and returns its address.
func loadServer(t *testing.T, acks *FleetAcks) (*lrs.Server, string) {
	t.Helper()
	ls, err := lrs.NewServer(lrs.Options{Attribute: lrs.AttributeCluster, LookupAck: acks.Lookup, RequireIdentity: true, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.StreamInterceptor(testIdentity))
	ls.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return ls, lis.Addr().String()
}

// loadStream opens an LRS stream as namespace/name and reads the server's
// interval answer.
func loadStream(t *testing.T, addr, namespace, name string) grpc.BidiStreamingClient[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse] {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(asIdentity(context.Background(), namespace, name))
	t.Cleanup(cancel)
	st, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: namespace + "-" + name}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	return st
}

// sendLoad sends one report of ok requests on cluster, revision r1 of its
// track.
func sendLoad(t *testing.T, st grpc.BidiStreamingClient[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse], cluster, track string, ok uint64) {
	t.Helper()
	err := st.Send(&lrsv3.LoadStatsRequest{ClusterStats: []*endpointv3.ClusterStats{{
		ClusterName: cluster,
		UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{{
			Locality: &corev3.Locality{SubZone: track + "/r1"}, TotalSuccessfulRequests: ok, TotalIssuedRequests: ok,
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
}

// counted is the requests replica ls counted for namespace/checkout's
// track.
func counted(ls *lrs.Server, namespace, track string) uint64 {
	return ls.Aggregator().Local()[lrs.Key{Namespace: namespace, Service: "checkout", Track: track, Revision: "r1"}].Requests
}

// TestSlowPeerDoesNotHoldTheReceiveLoop: replica A asks replica B whether
// a reporter acknowledged a cluster, and B takes as long as the test
// likes. Meanwhile A's receive loops go on: the same stream's next report,
// on a cluster the reporter acknowledged on A, counts at once, and so do
// other streams'; the held report counts once B vouches for it, and a
// report B does not vouch for never counts. Lookups of one identity and
// cluster share one question.
func TestSlowPeerDoesNotHoldTheReceiveLoop(t *testing.T) {
	a, addrA := authzServer(t, Options{})
	b, addrB := authzServer(t, Options{})
	publishTenants(t, a, tenants(t, nil))
	publishTenants(t, b, tenants(t, nil))
	me := auth.Identity{Method: auth.MethodToken, Namespace: "team-a", Name: "checkout-client"}
	const canary, stable = "team-a/checkout/9090/canary", "team-a/checkout/9090/stable"
	onB := newSotwAs(t, addrB, "proxy-on-b", me.Namespace, me.Name)
	onB.request(resource.ClusterType, nil, nil, "")
	onB.request(resource.ClusterType, nil, onB.recv(), "")
	onA := newSotwAs(t, addrA, "proxy-on-a", me.Namespace, me.Name)
	onA.request(resource.ClusterType, []string{stable}, nil, "")
	onA.request(resource.ClusterType, []string{stable}, onA.recv(), "")
	eventually(t, "the ACKs to be indexed", func() bool {
		return b.Acknowledged(me, canary) && a.Acknowledged(me, stable)
	})
	if a.Acknowledged(me, canary) {
		t.Fatal("fixture: A itself has the canary's ACK")
	}

	release := make(chan struct{})
	var asked atomic.Int64
	toB := slowPeerListener(t, b, release, &asked)
	fleet := &FleetAcks{Local: a, Timeout: time.Minute, Peers: func(context.Context) ([]Peer, error) {
		return []Peer{{Addr: "b", Conn: toB}}, nil
	}}
	ls, addr := loadServer(t, fleet)

	mine := loadStream(t, addr, me.Namespace, me.Name)
	sendLoad(t, mine, canary, "canary", 7) // waits for B
	sendLoad(t, mine, stable, "stable", 5) // acknowledged on A
	eventually(t, "the stable report after the held one to count while B is silent", func() bool {
		return counted(ls, "team-a", "stable") == 5
	})
	again := loadStream(t, addr, me.Namespace, me.Name)
	sendLoad(t, again, canary, "canary", 3)
	stranger := loadStream(t, addr, "team-a", "someone-else")
	sendLoad(t, stranger, canary, "canary", 1000)
	eventually(t, "both questions to be in flight, and asked of B", func() bool {
		fleet.mu.Lock()
		defer fleet.mu.Unlock()
		return len(fleet.flight) == 2 && asked.Load() >= 1
	})
	if got := counted(ls, "team-a", "canary"); got != 0 {
		t.Fatalf("canary counted %d requests before B answered", got)
	}

	close(release)
	eventually(t, "the held canary reports to count once B vouched", func() bool {
		return counted(ls, "team-a", "canary") == 10
	})
	// The stranger's report was judged with the same answer round; give
	// any late count a chance to show by waiting for a later report.
	sendLoad(t, stranger, stable, "stable", 1)
	eventually(t, "the stranger's later report to be judged", func() bool {
		return fleet.remembers(auth.Identity{Method: auth.MethodToken, Namespace: "team-a", Name: "someone-else"}, stable)
	})
	if got := counted(ls, "team-a", "canary"); got != 10 {
		t.Errorf("canary counted %d requests, want 10: a report B never vouched for counted", got)
	}
	fleet.mu.Lock()
	defer fleet.mu.Unlock()
	if fleet.settled != 3 {
		t.Errorf("%d questions answered, want 3 (one per identity and cluster)", fleet.settled)
	}
}

// remembers reports whether f holds an answer for id and cluster.
func (f *FleetAcks) remembers(id auth.Identity, cluster string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.known[ackKey{id: id, cluster: cluster}]
	return ok
}

// TestFleetAcksBoundsTheQuestionsWaiting plays a flood of new identities
// while the peer does not answer: at most maxAckFlights questions wait,
// in requests of at most maxAckClusters, at most MaxQueries at once; one
// more is answered no at once, without asking; none is answered yes.
func TestFleetAcksBoundsTheQuestionsWaiting(t *testing.T) {
	b, _ := authzServer(t, Options{})
	release := make(chan struct{})
	var asked atomic.Int64
	toB := slowPeerListener(t, b, release, &asked)
	fleet := &FleetAcks{Timeout: time.Minute, MaxQueries: 3, Peers: func(context.Context) ([]Peer, error) {
		return []Peer{{Addr: "b", Conn: toB}}, nil
	}}
	var waiting []lrs.Ack
	for i := range maxAckFlights {
		id := auth.Identity{Method: auth.MethodToken, Namespace: "flood", Name: fmt.Sprint("id-", i)}
		a := fleet.Lookup(id, "flood/svc/9090/canary")
		if a.Done() == nil {
			t.Fatalf("question %d answered at once (%v) with room in the queue", i, a.Acked())
		}
		waiting = append(waiting, a)
	}
	over := fleet.Lookup(auth.Identity{Method: auth.MethodToken, Namespace: "flood", Name: "one-more"}, "flood/svc/9090/canary")
	if over.Done() != nil || over.Acked() {
		t.Fatal("a question beyond the bound was queued or answered yes")
	}
	eventually(t, "MaxQueries requests to reach B", func() bool { return asked.Load() == 3 })
	close(release)
	for i, a := range waiting {
		<-a.Done()
		if a.Acked() {
			t.Fatalf("question %d answered yes for an identity B never saw", i)
		}
	}
	// Each of the MaxQueries first requests may have left before the
	// queue filled; every later one is full.
	if got, want := asked.Load(), int64(maxAckFlights/maxAckClusters+3); got > want {
		t.Errorf("B got %d requests for %d questions, want at most %d", got, maxAckFlights, want)
	}
}
