package translate

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/sluice-dev/sluice/router"
)

// This file runs the translator's output through grpc-go's own proxyless xDS
// client (a real, independent xDS implementation): a go-control-plane ADS
// server serves the resources, two TestService backends stand in for the
// stable and canary pods, and the test checks that the client accepts the
// config and routes as the plan says. The go-control-plane server does not
// serve LRS; the client's load reports fail without affecting RPCs.

const nodeID = "translate-test"

// backend serves TestService.UnaryCall, answering with its track, and
// counts the connections it accepted and the calls it served.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	track    router.Track
	accepted atomic.Int64
	served   atomic.Int64
}

func (b *backend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.served.Add(1)
	return &testgrpc.SimpleResponse{Hostname: string(b.track)}, nil
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// serve starts a gRPC server on loopback and returns its port. accepted, if
// not nil, counts the connections it accepts.
func serve(t *testing.T, accepted *atomic.Int64, register func(*grpc.Server)) int {
	t.Helper()
	var lis net.Listener
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	if accepted != nil {
		lis = countingListener{Listener: lis, n: accepted}
	}
	s := grpc.NewServer()
	register(s)
	go func() {
		if err := s.Serve(lis); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(s.Stop)
	return port
}

// xdsHarness is a control plane, two backends and a proxyless client.
type xdsHarness struct {
	t        *testing.T
	cache    cachev3.SnapshotCache
	client   testgrpc.TestServiceClient
	ports    map[router.Track]int
	backends map[router.Track]*backend

	mu sync.Mutex
	// requested holds, per resource type URL, every resource name the
	// client has asked for.
	requested map[string]map[string]bool
}

func newXDSHarness(t *testing.T) *xdsHarness {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Not in ADS mode: the snapshot cache then answers a request with the
	// subset of resources it names, instead of insisting that the client
	// name every resource of the snapshot.
	h := &xdsHarness{
		t: t, cache: cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil),
		ports: map[router.Track]int{}, backends: map[router.Track]*backend{},
		requested: map[string]map[string]bool{},
	}
	// A NACK fails the test: grpc-go must accept everything we generate.
	srv := serverv3.NewServer(ctx, h.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoverygrpc.DiscoveryRequest) error {
			if d := r.GetErrorDetail(); d != nil {
				t.Errorf("grpc-go NACKed %s version %q: %s", r.GetTypeUrl(), r.GetResponseNonce(), d.GetMessage())
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.requested[r.GetTypeUrl()] == nil {
				h.requested[r.GetTypeUrl()] = map[string]bool{}
			}
			for _, n := range r.GetResourceNames() {
				h.requested[r.GetTypeUrl()][n] = true
			}
			return nil
		},
	})
	xdsPort := serve(t, nil, func(s *grpc.Server) { discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s, srv) })
	for _, tr := range []router.Track{router.TrackStable, router.TrackCanary} {
		b := &backend{track: tr}
		h.backends[tr] = b
		h.ports[tr] = serve(t, &b.accepted, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, b) })
	}
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": "127.0.0.1:%d", "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q}
	}`, xdsPort, nodeID)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xds resolver: %v", err)
	}
	conn, err := grpc.NewClient("xds:///checkout.shop", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	h.client = testgrpc.NewTestServiceClient(conn)
	return h
}

// publish builds, translates and serves the service with the strategy.
func (h *xdsHarness) publish(version int, st router.Strategy) { h.publishReady(version, st, true) }

// publishReady is publish with the readiness of both pods.
func (h *xdsHarness) publishReady(version int, st router.Strategy, ready bool) {
	h.t.Helper()
	svc := router.Service{
		Namespace: "shop", Name: "checkout",
		Ports: []router.Port{{Name: "grpc", Number: 9090, Protocol: router.ProtocolGRPC}},
		Endpoints: []router.Endpoint{
			{Pod: "checkout-1", IP: "127.0.0.1", Ports: map[string]uint32{"grpc": uint32(h.ports[router.TrackStable])}, Ready: ready, Track: router.TrackStable},
			{Pod: "checkout-canary-1", IP: "127.0.0.1", Ports: map[string]uint32{"grpc": uint32(h.ports[router.TrackCanary])}, Ready: ready, Track: router.TrackCanary},
		},
		Strategy: st,
	}
	res, err := Translate(build(h.t, svc), Options{})
	if err != nil {
		h.t.Fatalf("Translate: %v", err)
	}
	byType := map[string][]types.Resource{}
	for _, typ := range res.Types() {
		for _, name := range res.Names(typ) {
			m, _ := res.Get(typ, name)
			byType[typ] = append(byType[typ], m)
		}
	}
	snap, err := cachev3.NewSnapshot(fmt.Sprintf("%d-%s", version, res.Version()), byType)
	if err != nil {
		h.t.Fatalf("snapshot: %v", err)
	}
	if err := h.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		h.t.Fatalf("set snapshot: %v", err)
	}
}

// call makes one RPC with the given headers and returns the track that
// answered.
func (h *xdsHarness) call(kv ...string) (router.Track, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := h.client.UnaryCall(metadata.AppendToOutgoingContext(ctx, kv...), &testgrpc.SimpleRequest{})
	if err != nil {
		return "", err
	}
	return router.Track(resp.GetHostname()), nil
}

// eventually polls cond until it holds or the deadline passes.
func (h *xdsHarness) eventually(what string, cond func() (bool, error)) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not reached before the deadline (last error: %v)", what, err)
		}
	}
}

func TestProxylessGRPCClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and a grpc-go xDS client")
	}
	h := newXDSHarness(t)

	// 1. No rollout: every RPC reaches stable.
	h.publish(1, router.Strategy{})
	h.eventually("first RPC", func() (bool, error) {
		tr, err := h.call()
		return tr == router.TrackStable, err
	})
	for i := 0; i < 50; i++ {
		if tr, err := h.call(); err != nil || tr != router.TrackStable {
			t.Fatalf("no rollout: RPC %d went to %q (err %v), want stable", i, tr, err)
		}
	}

	// 2. Canary at 50% with a cohort: the cohort always reaches the canary,
	// the rest splits.
	h.publish(2, router.Strategy{CanaryWeight: 5000, Cohorts: []router.Cohort{
		{Source: router.SourceHeader, Name: "X-Cohort", Match: router.MatchExact, Value: "beta"},
	}})
	h.eventually("cohort routed to canary", func() (bool, error) {
		tr, err := h.call("x-cohort", "beta")
		return tr == router.TrackCanary, err
	})
	for i := 0; i < 50; i++ {
		if tr, err := h.call("x-cohort", "beta"); err != nil || tr != router.TrackCanary {
			t.Fatalf("cohort RPC %d went to %q (err %v), want canary", i, tr, err)
		}
	}
	counts := map[router.Track]int{}
	for i := 0; i < 400; i++ {
		tr, err := h.call("x-cohort", "alpha")
		if err != nil {
			t.Fatalf("default RPC %d: %v", i, err)
		}
		counts[tr]++
	}
	// 400 fair coin tosses: 100..300 is more than 10 standard deviations wide.
	if c := counts[router.TrackCanary]; c < 100 || c > 300 {
		t.Errorf("50%% canary: %d of 400 RPCs reached the canary (%v)", c, counts)
	}

	// 3. Sticky split at 30%, then 60%: each user keeps one version, and
	// raising the share only moves users to the canary.
	const users = 200
	assign := func() (map[int]router.Track, error) {
		out := map[int]router.Track{}
		for u := 0; u < users; u++ {
			tr, err := h.call("x-user", fmt.Sprint("user-", u))
			if err != nil {
				return nil, fmt.Errorf("sticky RPC for user %d: %w", u, err)
			}
			out[u] = tr
		}
		return out, nil
	}
	onCanary := func(a map[int]router.Track) int {
		n := 0
		for _, tr := range a {
			if tr == router.TrackCanary {
				n++
			}
		}
		return n
	}
	sticky := func(share router.Weight) router.Strategy {
		return router.Strategy{Sticky: &router.Sticky{Source: router.SourceHeader, Name: "x-user", Share: share}}
	}
	h.publish(3, sticky(3000))
	var before map[int]router.Track
	// Until the client applies the split, these requests take the 50% default
	// route at random; two identical assignments in a row mean it has.
	h.eventually("sticky split applied", func() (bool, error) {
		first, err := assign()
		if err != nil {
			return false, err
		}
		before, err = assign()
		if err != nil {
			return false, err
		}
		for u := range users {
			if first[u] != before[u] {
				return false, nil
			}
		}
		return true, nil
	})
	if n := onCanary(before); n < users*15/100 || n > users*45/100 {
		t.Errorf("30%% sticky share: %d of %d users on the canary", n, users)
	}
	h.publish(4, sticky(6000))
	var after map[int]router.Track
	h.eventually("raised share applied", func() (bool, error) {
		var err error
		after, err = assign()
		return onCanary(after) > onCanary(before), err
	})
	var back []string
	for u := range users {
		if before[u] == router.TrackCanary && after[u] != router.TrackCanary {
			back = append(back, fmt.Sprint(u))
		}
	}
	if len(back) > 0 {
		t.Errorf("raising the share moved users %s back to stable", strings.Join(back, ", "))
	}
	if n := onCanary(after); n < users*45/100 || n > users*75/100 {
		t.Errorf("60%% sticky share: %d of %d users on the canary", n, users)
	}

	// 4. No ready pods: the clusters stay, empty, and RPCs fail with
	// Unavailable instead of waiting out their deadline.
	h.publishReady(5, router.Strategy{CanaryWeight: 5000}, false)
	// The client learns that each cluster is empty from a separate EDS
	// response (the warm-up route keeps both loaded), so for a moment one
	// cluster may still serve: wait for a run of Unavailable answers.
	h.eventually("RPCs fail fast without ready endpoints", func() (bool, error) {
		for range 20 {
			if _, err := h.call(); status.Code(err) != codes.Unavailable {
				return false, err
			}
		}
		return true, nil
	})
	for i := 0; i < 20; i++ {
		if _, err := h.call(); status.Code(err) != codes.Unavailable {
			t.Fatalf("no ready endpoints: RPC %d ended with %v, want Unavailable", i, err)
		}
	}
}
