package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// fakeClock is a tracker clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const canaryCluster = "shop/checkout/canary"

func holderNames(hs []Holder) map[string]bool {
	out := map[string]bool{}
	for _, h := range hs {
		out[h.Node] = h.Disconnected
	}
	return out
}

// TestHoldersByAcknowledgedContent: before a canary is deleted, the proxies
// that may still send it traffic are those that do not carry the published
// routes and whose acknowledged routes reach it: a proxy rejecting weight 0
// after acknowledging 10% holds, one rejecting it after acknowledging only
// 0% does not, and a proxy that disconnected with 10% holds until it is
// connected again or its tombstone expires.
func TestHoldersByAcknowledgedContent(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s, addr := testServer(t, Options{AckTimeout: 200 * time.Millisecond, StaleAfter: time.Minute})
	s.tracker.now = clock.Now
	ctx := context.Background()
	route := []string{resumeSvc}
	publish := func(r Resources) {
		t.Helper()
		if err := s.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	syncRoute := func(c *sotwClient, nack string) {
		t.Helper()
		resp := c.recv()
		if resp.GetTypeUrl() != resource.RouteType {
			t.Fatalf("got %s, want routes", resp.GetTypeUrl())
		}
		c.request(resource.RouteType, route, resp, nack)
	}
	subscribe := func(node string) *sotwClient {
		c := newSotw(t, addr, node)
		c.request(resource.RouteType, route, nil, "")
		return c
	}

	publish(weighted(t, 10000, 0))
	never := subscribe("never-routed")
	syncRoute(never, "")
	publish(weighted(t, 9000, 1000))
	syncRoute(never, "rejects 10%")
	routed, gone := subscribe("routed"), subscribe("gone")
	syncRoute(routed, "")
	syncRoute(gone, "")
	eventually(t, "both to carry 10%", func() bool {
		a, _, _ := s.Synced(resource.RouteType, resumeSvc, mustVersion(t, weighted(t, 9000, 1000)[resource.RouteType][resumeSvc]))
		return a == 2
	})
	if hs := s.Holders(route, []string{canaryCluster}); len(hs) != 0 {
		t.Fatalf("holders %+v while every proxy carries or rejected routes it acknowledged; want none", hs)
	}
	gone.cancel()
	eventually(t, "the stream to close", func() bool { return len(s.Proxies()) == 2 })

	// Rollback: weight 0, in a route content none of them carried yet.
	back := service(t, resumeSvc, map[string]uint32{"shop/checkout/stable": 10000, canaryCluster: 0, "shop/checkout/spare": 0}, "127.0.0.1", 9)
	publish(back)
	syncRoute(routed, "rejects 0%")
	syncRoute(never, "rejects 0% too")
	eventually(t, "both rejections", func() bool {
		_, _, n := s.Synced(resource.RouteType, resumeSvc, mustVersion(t, back[resource.RouteType][resumeSvc]))
		return n == 2
	})
	got := holderNames(s.Holders(route, []string{canaryCluster}))
	if len(got) != 2 || got["routed"] || !got["gone"] {
		t.Fatalf("holders %v; want the rejecting proxy that routed to the canary, and the disconnected one", got)
	}
	if hs := s.Holders(route, []string{"shop/other/canary"}); len(hs) != 0 {
		t.Fatalf("holders of another service's canary: %+v, want none", hs)
	}

	// The disconnected proxy comes back and resumes at what it carried: it
	// is connected, pending on weight 0, and no longer a tombstone.
	again := subscribe("gone")
	syncRoute(again, "")
	eventually(t, "the returning proxy to carry 0%", func() bool {
		a, _, _ := s.Synced(resource.RouteType, resumeSvc, mustVersion(t, back[resource.RouteType][resumeSvc]))
		return a == 1
	})
	if got := holderNames(s.Holders(route, []string{canaryCluster})); len(got) != 1 {
		t.Fatalf("holders %v after the disconnected proxy took weight 0; want only the rejecting one", got)
	}
	// It leaves again, carrying weight 0: its tombstone does not hold.
	again.cancel()
	eventually(t, "the stream to close", func() bool { return len(s.Proxies()) == 2 })
	if got := holderNames(s.Holders(route, []string{canaryCluster})); len(got) != 1 {
		t.Fatalf("holders %v; a proxy that left carrying weight 0 must not hold", got)
	}

	// A proxy that leaves routing to the canary holds until its tombstone
	// expires (the stale bound).
	routed.cancel()
	eventually(t, "the stream to close", func() bool { return len(s.Proxies()) == 1 })
	if got := holderNames(s.Holders(route, []string{canaryCluster})); len(got) != 1 || !got["routed"] {
		t.Fatalf("holders %v; want the proxy that left routing to the canary, as disconnected", got)
	}
	clock.add(time.Minute)
	if hs := s.Holders(route, []string{canaryCluster}); len(hs) != 0 {
		t.Fatalf("holders %+v after the tombstone bound; want none", hs)
	}
}
