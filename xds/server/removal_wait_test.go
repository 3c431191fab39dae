package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// removalState is a route configuration "checkout.shop" sending to the
// given clusters, with each of extra published next to them.
func removalState(t *testing.T, weights map[string]uint32, extra ...string) Resources {
	r := service(t, "checkout.shop", weights, "127.0.0.1", 8080)
	for _, c := range extra {
		r[resource.ClusterType][c] = edsCluster(c)
		r[resource.EndpointType][c] = endpoints(c, "", "127.0.0.1", 8081)
	}
	return r
}

// subscribeRoute opens a stream that subscribes to the route configuration
// "checkout.shop" and acknowledges the first content it gets.
func subscribeRoute(t *testing.T, addr, node string) *sotwClient {
	c := newSotw(t, addr, node)
	c.request(resource.RouteType, []string{"checkout.shop"}, nil, "")
	c.request(resource.RouteType, []string{"checkout.shop"}, c.recv(), "")
	return c
}

// TestRemovalWaitsOnlyForProxiesNamingTheClusters: removing clusters waits
// for the proxies whose routes still name them, not for a proxy that was
// sent a route change and has not answered it (a gRPC C-core client reads
// its xDS stream only while it makes calls, so an idle one answers late)
// when neither its old nor its new route names the removed clusters.
func TestRemovalWaitsOnlyForProxiesNamingTheClusters(t *testing.T) {
	const stable, canary, sticky = "shop/checkout/stable", "shop/checkout/canary", "shop/checkout/sticky"
	s, addr := testServer(t, Options{AckTimeout: time.Hour, StaleAfter: -1})
	ctx := context.Background()
	if err := s.Update(ctx, removalState(t, map[string]uint32{stable: 80, canary: 20}, sticky)); err != nil {
		t.Fatal(err)
	}
	c := subscribeRoute(t, addr, "idle-proxy")
	eventually(t, "the proxy to acknowledge its route", func() bool {
		a, p, _ := s.Synced(resource.RouteType, "checkout.shop", mustVersion(t, routes("checkout.shop", map[string]uint32{stable: 80, canary: 20})))
		return a == 1 && p == 0
	})

	// The route changes, and the sticky cluster, which it never named, is
	// removed; the proxy receives the change and does not answer.
	uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Update(uctx, removalState(t, map[string]uint32{stable: 1}, canary)); err != nil {
		t.Fatalf("removal of a cluster the proxy's routes never named waited for it: %v", err)
	}
	if _, ok := s.Version(resource.ClusterType, sticky); ok {
		t.Fatal("the sticky cluster is still published")
	}
	late := c.recv() // the route change reached the proxy, which leaves it unanswered

	// A proxy whose route still names the removed cluster is waited for:
	// the canary stays until it answers.
	c2 := subscribeRoute(t, addr, "other-proxy")
	if err := s.Update(ctx, removalState(t, map[string]uint32{stable: 50, canary: 50})); err != nil {
		t.Fatal(err)
	}
	c2.request(resource.RouteType, []string{"checkout.shop"}, c2.recv(), "")
	c.request(resource.RouteType, []string{"checkout.shop"}, late, "")
	c.request(resource.RouteType, []string{"checkout.shop"}, c.recv(), "")
	eventually(t, "both proxies to carry the canary route", func() bool {
		a, p, _ := s.Synced(resource.RouteType, "checkout.shop", mustVersion(t, routes("checkout.shop", map[string]uint32{stable: 50, canary: 50})))
		return a == 2 && p == 0
	})
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	err := s.Update(short, removalState(t, map[string]uint32{stable: 1}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update removing the canary the silent proxies still route to = %v, want it to wait for them until ctx ends", err)
	}
	if _, ok := s.Version(resource.ClusterType, canary); !ok {
		t.Fatal("the canary cluster was removed while proxies still route to it")
	}
}
