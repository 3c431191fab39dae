package traffic

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/server"
)

// replica is one Sluice replica of the fleet test: an xDS server with the
// ProxySync service, on its own gRPC server.
type replica struct {
	srv  *server.Server
	addr string
	stop func()
}

func startReplica(t *testing.T, name string, opts ...grpc.ServerOption) replica {
	t.Helper()
	return startReplicaAt(t, name, "127.0.0.1:0", opts...)
}

// asPeer marks every call as made by a proven replica: the ProxySync
// service answers only those (the peer listener's mutual TLS proves it in
// Sluice).
func asPeer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(auth.NewContext(ctx, auth.Identity{Method: auth.MethodPeer, Name: "sluice"}), req)
}

// TestProxySyncNeedsAPeer checks that a caller that did not prove to be a
// replica learns nothing about this replica's proxies.
func TestProxySyncNeedsAPeer(t *testing.T) {
	r := startReplica(t, "replica")
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, err = server.QuerySync(context.Background(), conn, []server.SyncTarget{{TypeURL: resource.RouteType, Name: checkoutRoute, Version: "v1"}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("QuerySync without a peer identity: error = %v, want PermissionDenied", err)
	}
}

// TestConfirmWaitsForEveryReplicasProxies runs two replicas, each with one
// proxy. The leader's Confirm of a new weight returns only once the other
// replica's proxy acknowledged it too (it is held until then), and counts
// both. When the other replica dies, Confirm names it stale after the grace
// and goes on with the leader's own proxies.
func TestConfirmWaitsForEveryReplicasProxies(t *testing.T) {
	leader, other := startReplica(t, "leader", grpc.UnaryInterceptor(asPeer)), startReplica(t, "other", grpc.UnaryInterceptor(asPeer))
	conn, err := grpc.NewClient(other.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	peers := func(context.Context) ([]server.Peer, error) {
		return []server.Peer{{Addr: other.addr, Conn: conn}}, nil
	}
	srcL, srcO := newFakeSource(canaryObjects(0)), newFakeSource(canaryObjects(0))
	c := startController(t, leader.srv, srcL, Options{Logger: testr.New(t), Peers: peers, PeerGrace: 300 * time.Millisecond, Replica: "leader"})
	startController(t, other.srv, srcO, Options{Logger: testr.New(t)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := startProxy(ctx, dialADS(t, leader.addr), "proxy-on-leader", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	// The other replica's proxy acknowledges its first routes at once and
	// every later response only once the gate opens.
	gate := make(chan struct{})
	var gateOpen atomic.Bool
	var answered atomic.Int32
	if _, err := startProxy(ctx, dialADS(t, other.addr), "proxy-on-other", resource.RouteType, []string{checkoutRoute},
		func(*discovery.DiscoveryResponse) string {
			if answered.Add(1) > 1 {
				<-gate
			}
			return ""
		}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if got := confirm(t, c, 0); got.Acked == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two proxies never both carried weight 0")
		}
		time.Sleep(10 * time.Millisecond)
	}

	srcL.set(canaryObjects(5000), true)
	srcO.set(canaryObjects(5000), true)
	done := make(chan Confirmation, 1)
	var returnedWithGateOpen atomic.Bool
	go func() {
		got := confirm(t, c, router.Weight(5000))
		returnedWithGateOpen.Store(gateOpen.Load())
		done <- got
	}()
	// The leader's own proxy carries 50% and the other replica published
	// it; only the other replica's proxy is missing.
	for {
		v, ok := other.srv.Version(resource.RouteType, checkoutRoute)
		lv, _ := leader.srv.Version(resource.RouteType, checkoutRoute)
		if a, _, _ := leader.srv.Synced(resource.RouteType, checkoutRoute, lv); ok && v == lv && a == 1 && answered.Load() > 1 {
			break
		}
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatal("weight 50% never reached the leader's proxy and the other replica")
		}
		time.Sleep(10 * time.Millisecond)
	}
	gateOpen.Store(true)
	close(gate)
	got := <-done
	if !returnedWithGateOpen.Load() {
		t.Fatal("Confirm returned before the other replica's proxy acknowledged")
	}
	if got.Acked != 2 || got.Nacked != 0 || len(got.Stale) != 0 {
		t.Fatalf("confirmation %+v, want both proxies acked", got)
	}
	perReplica := []v1alpha1.ReplicaProxies{{Replica: "leader", Acked: 1}, {Replica: "other", Acked: 1}}
	if !slices.Equal(got.Replicas, perReplica) {
		t.Fatalf("per replica %+v, want %+v", got.Replicas, perReplica)
	}

	// The other replica dies: after the grace it is named, not waited for.
	other.stop()
	srcL.set(canaryObjects(10000), true)
	got = confirm(t, c, router.Weight(10000))
	if got.Acked != 1 || len(got.Stale) != 1 || got.Stale[0] != "replica "+other.addr {
		t.Fatalf("confirmation %+v, want the leader's proxy acked and the dead replica named stale", got)
	}
	perReplica = []v1alpha1.ReplicaProxies{{Replica: "leader", Acked: 1}, {Replica: other.addr, Stale: 1}}
	if !slices.Equal(got.Replicas, perReplica) {
		t.Fatalf("per replica %+v, want %+v", got.Replicas, perReplica)
	}
}

// TestConfirmGoesOnWhenPeersCannotBeFound: when the other replicas cannot be
// found at all (their DNS name does not resolve), Confirm names that as
// stale after the grace instead of never confirming, and later confirmations
// do not wait for the grace again.
func TestConfirmGoesOnWhenPeersCannotBeFound(t *testing.T) {
	r := startReplica(t, "alone")
	peers := func(context.Context) ([]server.Peer, error) {
		return nil, errors.New("lookup sluice-peers: no such host")
	}
	src := newFakeSource(canaryObjects(0))
	c := startController(t, r.srv, src, Options{Logger: testr.New(t), Peers: peers, PeerGrace: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := startProxy(ctx, dialADS(t, r.addr), "proxy", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	for _, w := range []router.Weight{0, 1000} {
		src.set(canaryObjects(v1alpha1.BasisPoints(w)), true)
		got := confirm(t, c, w)
		if len(got.Stale) != 1 || !strings.Contains(got.Stale[0], "no such host") {
			t.Fatalf("weight %s: confirmation %+v, want the unresolvable peers named stale", w, got)
		}
	}
}

// TestConfirmNamesCanaryHoldersOnEveryReplica: at weight 0 (a rollback),
// Confirm names the proxies of every replica that may still send the canary
// traffic: one of the leader's that rejects weight 0 after acknowledging
// 50%, and one that disconnected from the other replica carrying 50% (its
// tombstone travels over ProxySync). Once that proxy reconnects, to the
// leader, and takes weight 0, it no longer holds.
func TestConfirmNamesCanaryHoldersOnEveryReplica(t *testing.T) {
	leader, other := startReplica(t, "leader", grpc.UnaryInterceptor(asPeer)), startReplica(t, "other", grpc.UnaryInterceptor(asPeer))
	conn, err := grpc.NewClient(other.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	peers := func(context.Context) ([]server.Peer, error) {
		return []server.Peer{{Addr: other.addr, Conn: conn}}, nil
	}
	srcL, srcO := newFakeSource(canaryObjects(5000)), newFakeSource(canaryObjects(5000))
	c := startController(t, leader.srv, srcL, Options{Logger: testr.New(t), Peers: peers, Replica: "leader"})
	startController(t, other.srv, srcO, Options{Logger: testr.New(t)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var answered atomic.Int32
	if _, err := startProxy(ctx, dialADS(t, leader.addr), "rejecter", resource.RouteType, []string{checkoutRoute},
		func(*discovery.DiscoveryResponse) string {
			if answered.Add(1) > 1 {
				return "not this one"
			}
			return ""
		}); err != nil {
		t.Fatal(err)
	}
	leaverCtx, leave := context.WithCancel(ctx)
	if _, err := startProxy(leaverCtx, dialADS(t, other.addr), "leaver", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, c, 5000, 2)
	leave()
	deadline := time.Now().Add(20 * time.Second)
	for len(other.srv.Proxies()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the leaving proxy's stream never closed")
		}
		time.Sleep(10 * time.Millisecond)
	}

	srcL.set(canaryObjects(0), true)
	srcO.set(canaryObjects(0), true)
	var got Confirmation
	for got = confirm(t, c, 0); got.Nacked != 1; got = confirm(t, c, 0) {
		if time.Now().After(deadline) {
			t.Fatalf("confirmation %+v, want the rejection of weight 0", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	holders := map[string]server.Holder{}
	for _, h := range got.Holding {
		holders[h.Node] = h
	}
	if r, l := holders["rejecter"], holders["leaver"]; len(holders) != 2 || r.Replica != "leader" || r.Disconnected ||
		l.Replica != "other" || !l.Disconnected || len(got.Overdue) != 0 {
		t.Fatalf("holding %+v, overdue %+v; want the rejecting proxy on the leader and the disconnected one on the other replica", got.Holding, got.Overdue)
	}
	t.Logf("holders: %s; %s", c.DescribeHolder(holders["rejecter"]), c.DescribeHolder(holders["leaver"]))

	if _, err := startProxy(ctx, dialADS(t, leader.addr), "leaver", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	for got = confirm(t, c, 0); got.Acked != 1; got = confirm(t, c, 0) {
		if time.Now().After(deadline) {
			t.Fatalf("confirmation %+v, want the returning proxy acked", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got.Holding) != 1 || got.Holding[0].Node != "rejecter" {
		t.Fatalf("holding %+v after the disconnected proxy took weight 0 elsewhere; want only the rejecting one", got.Holding)
	}
}

// TestCanaryHolderCannotExtendItsWait plays a proxy that tries to keep a
// rolled-back canary alive by disconnecting, reconnecting and rejecting
// again, so that its rejection always looks fresh: the wait counts from
// the first time it was seen holding the canary, and ends.
func TestCanaryHolderCannotExtendItsWait(t *testing.T) {
	c := &Controller{deletionWait: time.Minute}
	k := ServiceKey{Namespace: "shop", Name: "checkout"}
	first := time.Now().Add(-61 * time.Second)
	holding, overdue := c.splitHolders(k, []server.Holder{{Node: "p", Replica: "a", Since: first}}, nil)
	if len(holding) != 0 || len(overdue) != 1 {
		t.Fatalf("holding %+v, overdue %+v; want the proxy overdue", holding, overdue)
	}
	// Reconnected to another replica, rejecting again just now.
	holding, overdue = c.splitHolders(k, []server.Holder{{Node: "p", Replica: "b", Since: time.Now()}}, nil)
	if len(holding) != 0 || len(overdue) != 1 || !overdue[0].Since.Equal(first) {
		t.Fatalf("holding %+v, overdue %+v; want the proxy still overdue since %v", holding, overdue, first)
	}
	// Once nothing holds the canary, the memory goes; a new holder starts afresh.
	if holding, overdue = c.splitHolders(k, nil, nil); len(holding)+len(overdue) != 0 {
		t.Fatalf("holding %+v, overdue %+v; want none", holding, overdue)
	}
	holding, _ = c.splitHolders(k, []server.Holder{{Node: "p", Since: time.Now()}}, nil)
	if len(holding) != 1 {
		t.Fatalf("holding %+v; want a fresh holder waited for", holding)
	}
}

// TestConfirmSkipsAReplicaThatIsGone: a replica whose address refuses
// connections holds no proxy, so a weight step does not wait the grace for
// it; the drain before a canary's deletion still does, giving that replica's
// proxies time to reconnect to a live one first.
func TestConfirmSkipsAReplicaThatIsGone(t *testing.T) {
	leader := startReplica(t, "leader")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := lis.Addr().String()
	lis.Close() // nothing listens there any more
	conn, err := grpc.NewClient(gone, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	peers := func(context.Context) ([]server.Peer, error) {
		return []server.Peer{{Addr: gone, Conn: conn}}, nil
	}
	src := newFakeSource(canaryObjects(0))
	c := startController(t, leader.srv, src, Options{Logger: testr.New(t), Peers: peers, PeerGrace: time.Hour, Replica: "leader"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := startProxy(ctx, dialADS(t, leader.addr), "proxy", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}

	// Wait until the proxy carries the service's routes at all.
	src.set(canaryObjects(1000), true)
	deadline := time.Now().Add(20 * time.Second)
	for confirm(t, c, router.Weight(1000)).Acked != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never carried weight 10%")
		}
		time.Sleep(10 * time.Millisecond)
	}

	src.set(canaryObjects(2000), true)
	got := confirm(t, c, router.Weight(2000))
	if got.Acked != 1 || !slices.Equal(got.Stale, []string{"replica " + gone}) {
		t.Fatalf("weight 20%%: confirmation %+v, want the leader's proxy acked and the gone replica named, within an hour's grace", got)
	}

	src.set(canaryObjects(0), true)
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer wcancel()
	if conf, err := c.Confirm(wctx, "shop", "checkout", 0); err == nil || !strings.Contains(err.Error(), "replica "+gone) {
		t.Fatalf("draining to weight 0: %+v, %v; want it still waiting for replica %s within the grace", conf, err, gone)
	}
}

// TestConfirmWaitsForAReplicaThatCameBack kills the other replica for
// longer than the grace and starts a new one at the same address, with a
// proxy slow to acknowledge: the leader's next Confirm waits for that proxy.
// The connection to the old process is then still in its backoff and fails
// at once with the old error; counted from when the old process died, the
// new one would be named stale at once and its proxy never waited for.
func TestConfirmWaitsForAReplicaThatCameBack(t *testing.T) {
	leader, other := startReplica(t, "leader", grpc.UnaryInterceptor(asPeer)), startReplica(t, "other", grpc.UnaryInterceptor(asPeer))
	pool := &server.PeerPool{
		Resolve:     func(context.Context) ([]string, error) { return []string{other.addr}, nil },
		Credentials: insecure.NewCredentials(),
	}
	t.Cleanup(pool.Close)
	const grace = 300 * time.Millisecond
	srcL := newFakeSource(canaryObjects(0))
	c := startController(t, leader.srv, srcL, Options{Logger: testr.New(t), Peers: pool.Peers, PeerGrace: grace, Replica: "leader"})
	startController(t, other.srv, newFakeSource(canaryObjects(0)), Options{Logger: testr.New(t)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := startProxy(ctx, dialADS(t, leader.addr), "proxy-on-leader", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for confirm(t, c, 0).Acked != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the leader's proxy never carried weight 0")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The other replica dies and stays away for several graces, while the
	// leader confirms steps without it.
	other.stop()
	for i, w := range []v1alpha1.BasisPoints{1000, 2000, 3000} {
		srcL.set(canaryObjects(w), true)
		if got := confirm(t, c, router.Weight(w)); !slices.Equal(got.Stale, []string{"replica " + other.addr}) {
			t.Fatalf("step %d with the other replica dead: confirmation %+v, want it named stale", i+1, got)
		}
		time.Sleep(grace)
	}

	// A new process at the same address, whose proxy acknowledges its first
	// routes at once and later ones only once the gate opens.
	back := startReplicaAt(t, "other", other.addr, grpc.UnaryInterceptor(asPeer))
	srcO := newFakeSource(canaryObjects(3000))
	startController(t, back.srv, srcO, Options{Logger: testr.New(t)})
	gate := make(chan struct{})
	var gateOpen atomic.Bool
	var answered atomic.Int32
	if _, err := startProxy(ctx, dialADS(t, back.addr), "proxy-on-other", resource.RouteType, []string{checkoutRoute},
		func(*discovery.DiscoveryResponse) string {
			if answered.Add(1) > 1 {
				<-gate
			}
			return ""
		}); err != nil {
		t.Fatal(err)
	}
	for answered.Load() < 1 {
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatal("the new replica's proxy never got its first routes")
		}
		time.Sleep(10 * time.Millisecond)
	}

	srcL.set(canaryObjects(5000), true)
	srcO.set(canaryObjects(5000), true)
	done := make(chan Confirmation, 1)
	var returnedWithGateOpen atomic.Bool
	go func() {
		got := confirm(t, c, router.Weight(5000))
		returnedWithGateOpen.Store(gateOpen.Load())
		done <- got
	}()
	for answered.Load() < 2 {
		select {
		case got := <-done:
			t.Fatalf("Confirm returned %+v before the new replica's proxy got weight 50%%", got)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline.Add(40 * time.Second)) {
			t.Fatal("weight 50% never reached the new replica's proxy")
		}
	}
	gateOpen.Store(true)
	close(gate)
	got := <-done
	if !returnedWithGateOpen.Load() {
		t.Fatalf("Confirm returned %+v before the new replica's proxy acknowledged", got)
	}
	if got.Acked != 2 || len(got.Stale) != 0 {
		t.Fatalf("confirmation %+v, want both proxies acked and nothing stale", got)
	}
}

// startReplicaAt is startReplica listening at addr (a port a stopped
// replica listened on is retried while the kernel frees it).
func startReplicaAt(t *testing.T, name, addr string, opts ...grpc.ServerOption) replica {
	t.Helper()
	srv := server.New(server.Options{Logger: testr.New(t).WithName(name), Registerer: prometheus.NewRegistry()})
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	srv.RegisterSync(g, name)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)
	return replica{srv: srv, addr: lis.Addr().String(), stop: g.Stop}
}
