package traffic

import (
	"context"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/translate"
)

var checkoutRoute = translate.GRPCListenerName("shop", "checkout", 8080)

func canaryObjects(weight v1alpha1.BasisPoints) Objects {
	return Objects{
		Pods: []corev1.Pod{
			pod("stable-0", "checkout", "127.0.0.1"),
			pod("canary-0", "checkout", "127.0.0.2", canaryPod),
		},
		Rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, weight)},
	}
}

func confirm(t *testing.T, c *Controller, w router.Weight) Confirmation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conf, err := c.Confirm(ctx, "shop", "checkout", w)
	if err != nil {
		t.Fatalf("confirm %s: %v", w, err)
	}
	return conf
}

func TestConfirmWeightSteps(t *testing.T) {
	log := testr.New(t)
	srv, addr := xdsServer(t, log)
	src := newFakeSource(canaryObjects(0))
	c := startController(t, srv, src, Options{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads := dialADS(t, addr)
	for _, node := range []string{"proxy-a", "proxy-b"} {
		if _, err := startProxy(ctx, ads, node, resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
			t.Fatal(err)
		}
	}
	want := Confirmation{Acked: 2}
	eventuallyAcked := func(w router.Weight) {
		t.Helper()
		// A proxy that has not subscribed yet is not waited for; poll until
		// both streams are in.
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := confirm(t, c, w)
			if got.Acked == want.Acked && got.Nacked == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("weight %s: confirmation %+v, want %+v", w, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	eventuallyAcked(0)
	for _, w := range []v1alpha1.BasisPoints{1000, 5000, 10000, 0} {
		src.set(canaryObjects(w), true)
		if got := confirm(t, c, router.Weight(w)); got.Acked != 2 || got.Nacked != 0 {
			t.Fatalf("weight %s: confirmation %+v, want 2 acked", w, got)
		}
		c.mu.Lock()
		pw := c.published.services[ServiceKey{"shop", "checkout"}].weight
		c.mu.Unlock()
		if pw != router.Weight(w) {
			t.Fatalf("published weight %s, want %s", pw, router.Weight(w))
		}
	}
}

func TestConfirmNoProxiesAndUnknownService(t *testing.T) {
	srv, _ := xdsServer(t, testr.New(t))
	src := newFakeSource(canaryObjects(300))
	c := startController(t, srv, src, Options{Logger: testr.New(t)})
	if got := confirm(t, c, 300); got.Acked != 0 || got.Nacked != 0 {
		t.Fatalf("confirmation %+v, want zero", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.Confirm(ctx, "shop", "nothing-here", 0); err != nil || got.Acked != 0 {
		t.Fatalf("weight 0 of an unpublished service: %+v, %v; want confirmed", got, err)
	}
}

func TestConfirmWaitsForTheWeight(t *testing.T) {
	srv, _ := xdsServer(t, testr.New(t))
	src := newFakeSource(canaryObjects(300))
	c := startController(t, srv, src, Options{Logger: testr.New(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Confirm(ctx, "shop", "checkout", 700)
	if err == nil || !strings.Contains(err.Error(), "published with canary weight 3%, still waiting for 7%") {
		t.Fatalf("got %v, want an error naming the published and the awaited weight", err)
	}
}

func TestConfirmReportsNacks(t *testing.T) {
	log := testr.New(t)
	srv, addr := xdsServer(t, log)
	src := newFakeSource(canaryObjects(0))
	c := startController(t, srv, src, Options{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads := dialADS(t, addr)
	if _, err := startProxy(ctx, ads, "picky", resource.RouteType, []string{checkoutRoute}, nackWeighted); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, c, 0, 1)
	src.set(canaryObjects(2500), true)
	got := confirm(t, c, 2500)
	want := Confirmation{Nacked: 1, NackMessages: []string{"picky on this replica: weighted clusters: not today"}}
	if got.Acked != want.Acked || got.Nacked != want.Nacked || strings.Join(got.NackMessages, "|") != strings.Join(want.NackMessages, "|") {
		t.Fatalf("confirmation %+v, want %+v", got, want)
	}
	nacks := c.Nacks("shop", "checkout")
	if len(nacks) != 1 || nacks[0].Node != "picky" || nacks[0].Replica != "this replica" || nacks[0].Message != "weighted clusters: not today" ||
		nacks[0].TypeURL != resource.RouteType || strings.Join(nacks[0].Resources, ",") != checkoutRoute {
		t.Fatalf("Nacks = %+v, want one route NACK by picky", nacks)
	}
	if other := c.Nacks("shop", "search"); len(other) != 0 {
		t.Fatalf("Nacks of another service = %+v, want none", other)
	}
}

func TestConfirmFailsWhenTheWeightMovesOn(t *testing.T) {
	log := testr.New(t)
	srv, addr := xdsServer(t, log)
	src := newFakeSource(canaryObjects(0))
	c := startController(t, srv, src, Options{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A proxy that subscribes and never answers keeps every version pending.
	st, err := dialADS(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: []string{checkoutRoute}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	src.set(canaryObjects(1000), true)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Confirm(ctx, "shop", "checkout", 1000)
		errc <- err
	}()
	// Wait until 10% is published, then move on to 20%.
	for {
		c.mu.Lock()
		w := c.published.services[ServiceKey{"shop", "checkout"}].weight
		c.mu.Unlock()
		if w == 1000 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	src.set(canaryObjects(2000), true)
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "moved from 10% to 20%") {
			t.Fatalf("got %v, want an error saying the weight moved", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Confirm did not return after the weight moved on")
	}
}

func TestUrgentChangesSkipTheDebounce(t *testing.T) {
	srv, _ := xdsServer(t, testr.New(t))
	src := newFakeSource(canaryObjects(0))
	// With an hour of debounce, only urgent changes can be published in time.
	c := startController(t, srv, src, Options{Logger: testr.New(t), Debounce: time.Hour})
	confirm(t, c, 0)
	c.mu.Lock()
	seq := c.published.seq
	c.mu.Unlock()
	// A burst of ordinary changes (pods coming and going) waits...
	for i := range 5 {
		objs := canaryObjects(0)
		objs.Pods = append(objs.Pods, pod("extra", "checkout", "127.0.0.9", func(p *corev1.Pod) { p.Status.PodIP = "127.0.0." + string(rune('3'+i)) }))
		src.set(objs, false)
	}
	// ...and is coalesced into the publication of the urgent weight change.
	objs := canaryObjects(4000)
	objs.Pods = append(objs.Pods, pod("extra", "checkout", "127.0.0.9"))
	src.set(objs, true)
	confirm(t, c, 4000)
	c.mu.Lock()
	got := c.published.seq
	c.mu.Unlock()
	if got != seq+1 {
		t.Fatalf("published %d times after the burst, want once", got-seq)
	}
}

func TestInvalidServiceKeepsItsLastRoutes(t *testing.T) {
	srv, _ := xdsServer(t, testr.New(t))
	src := newFakeSource(canaryObjects(1000))
	c := startController(t, srv, src, Options{Logger: testr.New(t)})
	confirm(t, c, 1000)
	before, ok := srv.Version(resource.RouteType, checkoutRoute)
	if !ok {
		t.Fatal("checkout routes not published")
	}
	// Two ready checkout pods now share an address, which the router refuses;
	// a new service appears and the weight changes.
	objs := canaryObjects(5000)
	objs.Pods = append(objs.Pods, pod("dup", "checkout", "127.0.0.1"), pod("s", "search", "127.0.0.5"))
	src.set(objs, true)
	searchRoute := translate.GRPCListenerName("shop", "search", 8080)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := srv.Version(resource.RouteType, searchRoute); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("search was not published")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if after, _ := srv.Version(resource.RouteType, checkoutRoute); after != before {
		t.Fatal("checkout routes changed although its new state is invalid")
	}
	var found bool
	for _, p := range c.Problems() {
		if p.Service == (ServiceKey{"shop", "checkout"}) && strings.Contains(p.Message, "keeps its last valid routes") {
			found = true
		}
	}
	if !found {
		t.Fatalf("problems %v do not report the invalid checkout state", c.Problems())
	}
}

func TestRunsOnEveryReplica(t *testing.T) {
	if (&Controller{}).NeedLeaderElection() {
		t.Fatal("the traffic controller must run on every replica, not only the leader")
	}
}

func TestGoneServicesAreForgotten(t *testing.T) {
	srv, _ := xdsServer(t, testr.New(t))
	src := newFakeSource(canaryObjects(1000))
	c := startController(t, srv, src, Options{Logger: testr.New(t)})
	confirm(t, c, 1000)
	// checkout goes away; then it comes back invalid (two ready pods on one
	// address): having been gone, it has no last valid routes to keep.
	src.set(Objects{Pods: []corev1.Pod{pod("s", "search", "127.0.0.5")}}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Confirm(ctx, "shop", "checkout", 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Version(resource.RouteType, checkoutRoute); ok {
		t.Fatal("checkout routes still published after its pods went away")
	}
	objs := canaryObjects(1000)
	objs.Pods = append(objs.Pods, pod("dup", "checkout", "127.0.0.1"), pod("s", "search", "127.0.0.6"))
	src.set(objs, true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var found bool
		for _, p := range c.Problems() {
			found = found || (p.Service == ServiceKey{"shop", "checkout"} && strings.Contains(p.Message, "it is not published"))
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("problems %v do not say checkout is not published", c.Problems())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := srv.Version(resource.RouteType, checkoutRoute); ok {
		t.Fatal("checkout was published from routes kept from before it went away")
	}
}

// nackWeighted accepts a default route to one cluster and rejects a weighted
// one (routes with header matches, such as the router's warm-up route, are
// not default routes).
func nackWeighted(resp *discovery.DiscoveryResponse) string {
	for _, a := range resp.GetResources() {
		var rc routev3.RouteConfiguration
		if err := a.UnmarshalTo(&rc); err != nil {
			return err.Error()
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if len(r.GetMatch().GetHeaders()) == 0 && r.GetRoute().GetWeightedClusters() != nil {
					return "weighted clusters: not today"
				}
			}
		}
	}
	return ""
}

// waitConfirmed polls Confirm of weight w until n proxies acknowledged it.
func waitConfirmed(t *testing.T, c *Controller, w router.Weight, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for confirm(t, c, w).Acked != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d proxies did not acknowledge the routes of weight %s", n, w)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
