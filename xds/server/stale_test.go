package server

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
)

// TestHungProxyIsStaleNotWaitedFor has two proxies subscribe to a route: one
// acknowledges every response, the other (a hung process) never answers. A
// wait for new content returns once the healthy proxy carries it, naming the
// hung one stale, instead of holding until the caller gives up; a proxy that
// answers again is no longer stale.
func TestHungProxyIsStaleNotWaitedFor(t *testing.T) {
	const bound = 300 * time.Millisecond
	s, addr := testServer(t, Options{StaleAfter: bound})
	ctx := context.Background()
	r := twoServices(t)
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	healthy := newSotw(t, addr, "healthy")
	healthy.request(resource.RouteType, []string{"checkout.shop"}, nil, "")
	first := healthy.recv()
	healthy.request(resource.RouteType, []string{"checkout.shop"}, first, "")
	hung := newSotw(t, addr, "hung")
	beforeHung := time.Now()
	hung.request(resource.RouteType, []string{"checkout.shop"}, nil, "")
	hungFirst := hung.recv() // received, never acknowledged

	r[resource.RouteType]["checkout.shop"] = routes("checkout.shop", map[string]uint32{"shop/checkout/stable": 50, "shop/checkout/canary": 50})
	next := mustVersion(t, r[resource.RouteType]["checkout.shop"])
	updated := time.Now()
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	go func() {
		second := healthy.recv()
		healthy.request(resource.RouteType, []string{"checkout.shop"}, second, "")
	}()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	sy, err := s.WaitSynced(wctx, resource.RouteType, "checkout.shop", next)
	if err != nil {
		t.Fatalf("WaitSynced: %v (a hung proxy held the wait)", err)
	}
	t.Logf("returned after %s with stale bound %s", time.Since(start).Round(time.Millisecond), bound)
	// The hung proxy has been silent since the first response it left
	// unanswered, sent after it subscribed and before the update.
	if since, ok := sy.SilentSince["hung"]; !ok || since.Before(beforeHung) || since.After(updated) || len(sy.SilentSince) != 1 {
		t.Errorf("SilentSince %v, want only hung's, between %s and %s", sy.SilentSince, beforeHung.Format(time.StampMicro), updated.Format(time.StampMicro))
	}
	// A replica answers the leader's ProxySync with the same, as JSON.
	ps := s.SyncedNow([]SyncTarget{{TypeURL: resource.RouteType, Name: "checkout.shop", Version: next}})
	b, err := json.Marshal(ps)
	if err != nil {
		t.Fatal(err)
	}
	var back PeerSync
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.SilentSince["hung"]; !got.Equal(sy.SilentSince["hung"]) || !slices.Equal(back.Stale, []string{"hung"}) {
		t.Errorf("ProxySync answer %s, want hung stale and silent since %s", b, sy.SilentSince["hung"])
	}
	sy.SilentSince = nil
	if diff := cmp.Diff(Sync{Acked: []string{"healthy"}, Nacked: []string{}, Stale: []string{"hung"}}, sy); diff != "" {
		t.Fatalf("WaitSynced (-want +got):\n%s", diff)
	}

	// The hung proxy wakes up and acknowledges: it is no longer stale.
	hung.request(resource.RouteType, []string{"checkout.shop"}, hungFirst, "")
	hungSecond := hung.recv()
	hung.request(resource.RouteType, []string{"checkout.shop"}, hungSecond, "")
	eventually(t, "the woken proxy to carry the new routes", func() bool {
		a, p, n := s.Synced(resource.RouteType, "checkout.shop", next)
		return a == 2 && p == 0 && n == 0
	})
	sy, err = s.WaitSynced(wctx, resource.RouteType, "checkout.shop", next)
	if err != nil || len(sy.Stale) != 0 || len(sy.Acked) != 2 || len(sy.SilentSince) != 0 {
		t.Fatalf("after it answered: %+v, %v; want both acked, none stale", sy, err)
	}
}
