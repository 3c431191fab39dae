package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// warmRoutes is routes(name, weights) followed by a warm-up route: matched
// only by a header no request carries, sending to the warm clusters.
func warmRoutes(name string, weights map[string]uint32, warm ...string) *routev3.RouteConfiguration {
	rc := routes(name, weights)
	w := map[string]uint32{}
	for _, c := range warm {
		w[c] = 1
	}
	wr := routes(name, w).VirtualHosts[0].Routes[0]
	wr.Match.Headers = []*routev3.HeaderMatcher{{Name: "x-sluice-warmup", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "shop/checkout/8080"}},
	}}}
	rc.VirtualHosts[0].Routes = append(rc.VirtualHosts[0].Routes, wr)
	return rc
}

// TestGRPCWarmupLoadedBeforeTraffic is the start of a canary as the
// controller publishes it, with grpc-go's own xDS client under continuous
// RPCs: the canary cluster, published all along but named by no route, is
// first named by a warm-up route (a canary pod appeared), and traffic moves
// to it in the very next update (the rollout set its weight). grpc-go loads
// a cluster a route names (CDS, then EDS) before it applies that route, so
// if the weighted route arrives while it still loads the canary, it applies
// both at once: its route table names the canary before its balancer has a
// child for it, and the RPCs picked for the canary in that moment fail with
// "unknown cluster selected for RPC". The server must not send the weighted
// route before the client has loaded the cluster the warm-up route named.
func TestGRPCWarmupLoadedBeforeTraffic(t *testing.T) {
	s, addr := testServer(t, Options{AckTimeout: 30 * time.Second})
	stable, canary := startBackend(t, "stable"), startBackend(t, "canary")
	const svc = "checkout.shop"
	const stableC, canaryC = "shop/checkout/stable", "shop/checkout/canary"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	state := func(rc *routev3.RouteConfiguration) Resources {
		r := service(t, svc, map[string]uint32{stableC: 1}, "127.0.0.1", stable.port)
		r[resource.ClusterType][canaryC] = edsCluster(canaryC)
		r[resource.EndpointType][canaryC] = endpoints(canaryC, "", "127.0.0.1", canary.port)
		r[resource.RouteType][svc] = rc
		return r
	}
	update := func(rc *routev3.RouteConfiguration) {
		t.Helper()
		if err := s.Update(ctx, state(rc)); err != nil {
			t.Fatal(err)
		}
	}
	subscribedToCanary := func() bool {
		for _, p := range s.Proxies() {
			for _, ts := range p.Types {
				if ts.TypeURL == resource.ClusterType && slices.Contains(ts.Subscribed, canaryC) {
					return true
				}
			}
		}
		return false
	}

	update(routes(svc, map[string]uint32{stableC: 1}))
	client := xdsClient(t, addr, "grpc-client-warm", svc)
	eventually(t, "a first RPC", func() bool {
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err == nil
	})

	var mu sync.Mutex
	var failures []error
	ok := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	const cycles = 5
	for i := range cycles {
		// The canary ended: no route names its cluster, and the client
		// drops its subscription.
		update(routes(svc, map[string]uint32{stableC: 1}))
		eventually(t, "the client to drop the canary cluster", func() bool { return !subscribedToCanary() })
		// A new canary pod: the warm-up route names the cluster; at once
		// the weight moves.
		update(warmRoutes(svc, map[string]uint32{stableC: 1}, stableC, canaryC))
		update(warmRoutes(svc, map[string]uint32{stableC: 1, canaryC: 1}, stableC, canaryC))
		before := canary.calls.Load()
		eventually(t, "traffic on the canary", func() bool { return canary.calls.Load() > before+20 })
		t.Logf("cycle %d done", i+1)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d RPCs over %d canary starts, %d failed", ok+len(failures), cycles, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d RPCs failed as the canary started; first: %v", len(failures), failures[0])
	}
}

// TestWarmupWaitSkipsIdleProxies: the route moving traffic to a cluster
// that the published warm-up route names waits for a proxy that answered
// the warm-up route until it loaded the cluster, but not for a proxy that
// leaves the warm-up route unanswered (idle): it sends no request that
// could fail meanwhile.
func TestWarmupWaitSkipsIdleProxies(t *testing.T) {
	const svc = "checkout.shop"
	const stableC, canaryC = "shop/checkout/stable", "shop/checkout/canary"
	s, addr := testServer(t, Options{AckTimeout: time.Hour, StaleAfter: -1})
	state := func(rc *routev3.RouteConfiguration) Resources {
		r := removalState(t, map[string]uint32{stableC: 1}, canaryC)
		r[resource.RouteType][svc] = rc
		return r
	}
	ctx := context.Background()
	if err := s.Update(ctx, state(routes(svc, map[string]uint32{stableC: 1}))); err != nil {
		t.Fatal(err)
	}
	idle := subscribeRoute(t, addr, "idle-proxy")
	active := subscribeRoute(t, addr, "active-proxy")
	eventually(t, "both proxies to carry the stable route", func() bool {
		a, _, _ := s.Synced(resource.RouteType, svc, mustVersion(t, routes(svc, map[string]uint32{stableC: 1})))
		return a == 2
	})
	warm := warmRoutes(svc, map[string]uint32{stableC: 1}, stableC, canaryC)
	if err := s.Update(ctx, state(warm)); err != nil {
		t.Fatal(err)
	}
	idle.recv() // and never answered
	// The active proxy acknowledges the warm-up route but does not load the
	// canary cluster: traffic must not move to it.
	active.request(resource.RouteType, []string{svc}, active.recv(), "")
	eventually(t, "the active proxy to carry the warm-up route", func() bool {
		a, _, _ := s.Synced(resource.RouteType, svc, mustVersion(t, warm))
		return a == 1
	})
	weighted := warmRoutes(svc, map[string]uint32{stableC: 1, canaryC: 1}, stableC, canaryC)
	if err := s.Update(ctx, state(weighted)); err != nil {
		t.Fatalf("Update moving traffic to a cluster a proxy has not loaded: %v, want it to return, the route held", err)
	}
	if v, _ := s.Version(resource.RouteType, svc); v != mustVersion(t, warm) {
		t.Fatal("the weighted route was published before the proxy loaded the canary")
	}
	// Once the active proxy loaded the canary, only the idle one is left,
	// and it is not waited for: the held route is published without
	// another update.
	active.request(resource.ClusterType, []string{stableC, canaryC}, nil, "")
	active.request(resource.ClusterType, []string{stableC, canaryC}, active.recv(), "")
	if v, _ := s.Version(resource.RouteType, svc); v != mustVersion(t, warm) {
		t.Fatal("the weighted route was published before the proxy loaded the canary's endpoints")
	}
	active.request(resource.EndpointType, []string{stableC, canaryC}, nil, "")
	active.request(resource.EndpointType, []string{stableC, canaryC}, active.recv(), "")
	eventually(t, "the held weighted route to be published", func() bool {
		v, _ := s.Version(resource.RouteType, svc)
		return v == mustVersion(t, weighted)
	})
}

// TestHeldRouteHoldsNoOtherService: while a proxy loads checkout's canary,
// checkout's weighted route is held, and only it: an update that moves
// ledger's weight publishes ledger's route at once. A wait for the held
// content is not refused as superseded; it ends once the proxy loaded the
// canary and acknowledged the route, published then without another
// update.
func TestHeldRouteHoldsNoOtherService(t *testing.T) {
	const checkout, ledger = "checkout.shop", "ledger.shop"
	const stableC, canaryC = "shop/checkout/stable", "shop/checkout/canary"
	const ledgerStable, ledgerCanary = "shop/ledger/stable", "shop/ledger/canary"
	s, addr := testServer(t, Options{AckTimeout: time.Hour, StaleAfter: -1})
	state := func(rc *routev3.RouteConfiguration, ledgerWeight uint32) Resources {
		r := removalState(t, map[string]uint32{stableC: 1}, canaryC)
		r[resource.RouteType][checkout] = rc
		for typ, m := range service(t, ledger, map[string]uint32{ledgerStable: 100 - ledgerWeight, ledgerCanary: ledgerWeight}, "127.0.0.1", 8082) {
			for k, v := range m {
				r[typ][k] = v
			}
		}
		return r
	}
	ctx := context.Background()
	if err := s.Update(ctx, state(routes(checkout, map[string]uint32{stableC: 1}), 10)); err != nil {
		t.Fatal(err)
	}
	p := newSotw(t, addr, "loading-proxy")
	names := []string{checkout, ledger}
	p.request(resource.RouteType, names, nil, "")
	p.request(resource.RouteType, names, p.recv(), "")
	warm := warmRoutes(checkout, map[string]uint32{stableC: 1}, stableC, canaryC)
	if err := s.Update(ctx, state(warm, 10)); err != nil {
		t.Fatal(err)
	}
	p.request(resource.RouteType, names, p.recv(), "")
	eventually(t, "the proxy to carry the warm-up route", func() bool {
		a, _, _ := s.Synced(resource.RouteType, checkout, mustVersion(t, warm))
		return a == 1
	})

	weighted := warmRoutes(checkout, map[string]uint32{stableC: 1, canaryC: 1}, stableC, canaryC)
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Update(uctx, state(weighted, 10)); err != nil {
		t.Fatalf("Update of checkout's weight: %v, want it to return with the route held", err)
	}
	waited := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		sy, err := s.WaitSynced(wctx, resource.RouteType, checkout, mustVersion(t, weighted))
		if err == nil && len(sy.Acked) != 1 {
			err = fmt.Errorf("acked by %v, want the loading proxy", sy.Acked)
		}
		waited <- err
	}()
	next := state(weighted, 20)
	if err := s.Update(uctx, next); err != nil {
		t.Fatalf("Update of ledger's weight: %v", err)
	}
	if v, _ := s.Version(resource.RouteType, ledger); v != mustVersion(t, next[resource.RouteType][ledger]) {
		t.Fatal("ledger's new route is not published while checkout's is held")
	}
	if v, _ := s.Version(resource.RouteType, checkout); v != mustVersion(t, warm) {
		t.Fatal("checkout's weighted route was published before the proxy loaded the canary")
	}
	select {
	case err := <-waited:
		t.Fatalf("the wait for the held route ended before it was published: %v", err)
	default:
	}

	// The proxy takes ledger's route, loads the canary, and then
	// acknowledges whatever comes.
	if r := p.recv(); r.GetTypeUrl() != resource.RouteType {
		t.Fatalf("got %s, want ledger's new route", r.GetTypeUrl())
	} else {
		p.request(resource.RouteType, names, r, "")
	}
	p.request(resource.ClusterType, []string{stableC, canaryC}, nil, "")
	p.request(resource.ClusterType, []string{stableC, canaryC}, p.recv(), "")
	p.request(resource.EndpointType, []string{stableC, canaryC}, nil, "")
	p.request(resource.EndpointType, []string{stableC, canaryC}, p.recv(), "")
	for {
		r := p.recv()
		p.request(r.GetTypeUrl(), map[string][]string{resource.RouteType: names, resource.ClusterType: {stableC, canaryC}, resource.EndpointType: {stableC, canaryC}}[r.GetTypeUrl()], r, "")
		if v, _ := s.Version(resource.RouteType, checkout); v == mustVersion(t, weighted) && r.GetTypeUrl() == resource.RouteType {
			break
		}
	}
	if err := <-waited; err != nil {
		t.Fatalf("wait for the held route: %v", err)
	}
}
