package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/translate"
)

// TestWildcardSeesOnlyGranted: a wildcard LDS or CDS stream of each
// namespace gets exactly what its namespace is granted: its own services,
// services that name it a consumer and those granted to "*", never another
// namespace's.
func TestWildcardSeesOnlyGranted(t *testing.T) {
	s, addr := authzServer(t, Options{})
	res := tenants(t, nil)
	publishTenants(t, s, res)
	for _, ns := range []string{"team-a", "frontend", "billing", "shop", "elsewhere"} {
		t.Run(ns, func(t *testing.T) {
			want := visibleTo(res, ns)
			if !slices.Contains(want[resource.ListenerType], "checkout.team-b") {
				t.Fatalf("fixture: %s should see team-b's checkout through its \"*\" grant", ns)
			}
			if ns != "shop" && ns != "frontend" && slices.Contains(want[resource.ListenerType], "checkout.shop") {
				t.Fatalf("fixture: %s should not see shop's checkout", ns)
			}
			c := newSotwAs(t, addr, "proxy-"+ns, ns, "default")
			for _, typ := range []string{resource.ListenerType, resource.ClusterType} {
				c.request(typ, nil, nil, "")
				got := resourceNames(c.recv().GetResources())
				if diff := cmp.Diff(want[typ], got); diff != "" {
					t.Errorf("%s wildcard of %s (-granted +got):\n%s", typeLabel(typ), ns, diff)
				}
			}
		})
	}
}

// TestUnscopedStreamSeesEverything: without an identity (and without
// RequireIdentity) a stream keeps seeing every resource.
func TestUnscopedStreamSeesEverything(t *testing.T) {
	s, addr := authzServer(t, Options{})
	res := tenants(t, nil)
	publishTenants(t, s, res)
	c := newSotwAs(t, addr, "in-process", "", "")
	c.request(resource.ListenerType, nil, nil, "")
	if diff := cmp.Diff(res.Names(resource.ListenerType), resourceNames(c.recv().GetResources())); diff != "" {
		t.Errorf("listeners (-all +got):\n%s", diff)
	}
}

// TestExplicitForeignNamesAnsweredAsMissing: a stream that names resources
// of a namespace it has no grant for gets nothing for them, as if they did
// not exist; a granted namespace gets them.
func TestExplicitForeignNamesAnsweredAsMissing(t *testing.T) {
	s, addr := authzServer(t, Options{})
	publishTenants(t, s, tenants(t, nil))

	foreign := newSotwAs(t, addr, "proxy-team-a", "team-a", "default")
	foreign.request(resource.RouteType, []string{"checkout.shop:9090", "outbound_9090/shop", "outbound_9090/team-a"}, nil, "")
	resp := foreign.recv()
	if got := resourceNames(resp.GetResources()); !slices.Equal(got, []string{"outbound_9090/team-a"}) {
		t.Errorf("team-a got route configurations %q, want only its own outbound_9090/team-a", got)
	}
	if containsBytes(wireBytes(t, resp), shopCohort) {
		t.Error("team-a received shop's cohort value")
	}
	foreign.request(resource.EndpointType, []string{"shop/checkout/9090/stable", "billing/ledger/9090/stable"}, nil, "")
	if got := foreign.recv().GetResources(); len(got) != 0 {
		t.Errorf("team-a got endpoints %q of namespaces it has no grant for", resourceNames(got))
	}

	granted := newSotwAs(t, addr, "proxy-frontend", "frontend", "default")
	granted.request(resource.RouteType, []string{"checkout.shop:9090"}, nil, "")
	resp = granted.recv()
	if got := resourceNames(resp.GetResources()); !slices.Equal(got, []string{"checkout.shop:9090"}) {
		t.Fatalf("frontend got %q, want shop's granted route configuration", got)
	}
	if !containsBytes(wireBytes(t, resp), shopCohort) {
		t.Error("frontend, a granted consumer, did not receive shop's cohort route")
	}
}

// TestCohortValuesNeverReachForeignStreams asks, as each namespace without a
// grant, for every resource by name and by wildcard, over sotw and delta,
// and checks that no byte it receives carries shop's cohort value, while
// shop's own and its consumer's streams do receive it.
func TestCohortValuesNeverReachForeignStreams(t *testing.T) {
	s, addr := authzServer(t, Options{})
	res := tenants(t, nil)
	publishTenants(t, s, res)
	everything := func(typ string) []string {
		if typ == resource.ListenerType || typ == resource.ClusterType {
			return []string{"*"}
		}
		return res.Names(typ)
	}
	sotwBytes := func(ns string) []byte {
		c := newSotwAs(t, addr, "proxy-"+ns, ns, "default")
		var all []byte
		for _, typ := range Types {
			c.request(typ, everything(typ), nil, "")
			all = append(all, wireBytes(t, c.recv())...)
		}
		return all
	}
	deltaBytes := func(ns string) []byte {
		st := deltaStream(t, addr, ns, "default")
		var all []byte
		for _, typ := range Types {
			if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: testNode("delta-" + ns), TypeUrl: typ, ResourceNamesSubscribe: everything(typ)}); err != nil {
				t.Fatal(err)
			}
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, wireBytes(t, resp)...)
		}
		return all
	}
	for _, ns := range []string{"team-a", "billing", "elsewhere"} {
		if containsBytes(sotwBytes(ns), shopCohort) {
			t.Errorf("sotw stream of %s received shop's cohort value", ns)
		}
		if containsBytes(deltaBytes(ns), shopCohort) {
			t.Errorf("delta stream of %s received shop's cohort value", ns)
		}
	}
	for _, ns := range []string{"shop", "frontend"} {
		if !containsBytes(sotwBytes(ns), shopCohort) || !containsBytes(deltaBytes(ns), shopCohort) {
			t.Errorf("%s, allowed to see shop/checkout, did not receive its cohort value", ns)
		}
	}
}

// TestBareNameScopedToOwnNamespace: team-a's and team-b's sidecars both ask
// for the bare "checkout" and each reaches its own team's service; neither
// can read the other's sidecar routes.
func TestBareNameScopedToOwnNamespace(t *testing.T) {
	s, addr := authzServer(t, Options{})
	publishTenants(t, s, tenants(t, nil))
	for ns, other := range map[string]string{"team-a": "team-b", "team-b": "team-a"} {
		c := newSotwAs(t, addr, "sidecar-"+ns, ns, "default")
		c.request(resource.RouteType, []string{"outbound_9090/" + ns, "outbound_9090/" + other}, nil, "")
		rcs := decode(t, c.recv().GetResources(), func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
		if _, ok := rcs["outbound_9090/"+other]; ok || len(rcs) != 1 {
			t.Fatalf("%s got sidecar routes %q, want its own only", ns, slices.Sorted(mapsKeys(rcs)))
		}
		var bare []string
		for _, vh := range rcs["outbound_9090/"+ns].GetVirtualHosts() {
			if slices.Contains(vh.GetDomains(), "checkout") {
				bare = append(bare, vh.GetName())
			}
		}
		if !slices.Equal(bare, []string{"checkout." + ns}) {
			t.Errorf("in %s the bare name checkout reaches %q, want checkout.%s", ns, bare, ns)
		}
	}
}

// TestGrantChangeReachesStreams: granting a namespace sends it the service's
// resources on its open streams (sotw and delta), and revoking the grant
// takes them away (a full-state listener set without them, a delta removal).
func TestGrantChangeReachesStreams(t *testing.T) {
	s, addr := authzServer(t, Options{AckTimeout: time.Second})
	publishTenants(t, s, tenants(t, nil))
	lds := newSotwAs(t, addr, "proxy-team-a", "team-a", "default")
	lds.request(resource.ListenerType, nil, nil, "")
	resp := lds.recv()
	if slices.Contains(resourceNames(resp.GetResources()), "checkout.shop") {
		t.Fatal("team-a sees shop's listener before any grant")
	}
	lds.request(resource.ListenerType, nil, resp, "")
	cds := deltaStream(t, addr, "team-a", "default")
	if err := cds.Send(&discovery.DeltaDiscoveryRequest{Node: testNode("delta-team-a"), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	dresp, err := cds.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := cds.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: dresp.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	waitWatching(t, s.caches[resource.ListenerType], "team-a")
	waitWatching(t, s.caches[resource.ClusterType], "team-a")
	publishTenants(t, s, tenants(t, &router.Consumers{Namespaces: []string{"frontend", "team-a"}}))
	resp = lds.recv()
	if !slices.Contains(resourceNames(resp.GetResources()), "checkout.shop") {
		t.Errorf("after the grant team-a's listeners are %q, want checkout.shop among them", resourceNames(resp.GetResources()))
	}
	lds.request(resource.ListenerType, nil, resp, "")
	dresp, err = cds.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var added []string
	for _, r := range dresp.GetResources() {
		added = append(added, r.GetName())
	}
	if !slices.Contains(added, "shop/checkout/9090/stable") {
		t.Errorf("after the grant team-a's delta stream got clusters %q, want shop's", added)
	}
	if err := cds.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: dresp.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	waitWatching(t, s.caches[resource.ListenerType], "team-a")
	waitWatching(t, s.caches[resource.ClusterType], "team-a")
	publishTenants(t, s, tenants(t, nil))
	resp = lds.recv()
	if slices.Contains(resourceNames(resp.GetResources()), "checkout.shop") {
		t.Errorf("after the revocation team-a still gets shop's listener: %q", resourceNames(resp.GetResources()))
	}
	dresp, err = cds.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dresp.GetRemovedResources(), "shop/checkout/9090/stable") {
		t.Errorf("after the revocation team-a's delta stream was told removed %q, want shop's clusters", dresp.GetRemovedResources())
	}
}

// TestAcknowledged: a cluster counts for an identity only once a stream
// bound to exactly that identity has ACKed it, and no longer once that
// stream is gone.
func TestAcknowledged(t *testing.T) {
	s, addr := authzServer(t, Options{})
	publishTenants(t, s, tenants(t, nil))
	me := auth.Identity{Method: auth.MethodToken, Namespace: "team-a", Name: "checkout-client"}
	const cluster = "team-a/checkout/9090/canary"
	c := newSotwAs(t, addr, "proxy-team-a", me.Namespace, me.Name)
	c.request(resource.ClusterType, nil, nil, "")
	resp := c.recv()
	if !slices.Contains(resourceNames(resp.GetResources()), cluster) {
		t.Fatalf("fixture: team-a was not sent %s", cluster)
	}
	if s.Acknowledged(me, cluster) {
		t.Fatal("Acknowledged before the ACK")
	}
	c.request(resource.ClusterType, nil, resp, "")
	eventually(t, "the ACK to be indexed", func() bool { return s.Acknowledged(me, cluster) })
	for _, other := range []auth.Identity{
		{Method: auth.MethodToken, Namespace: "team-a", Name: "someone-else"},
		{Method: auth.MethodLegacy, Namespace: "team-a"},
		{Method: auth.MethodToken, Namespace: "team-b", Name: "checkout-client"},
	} {
		if s.Acknowledged(other, cluster) {
			t.Errorf("Acknowledged(%s) is true: only %s ACKed it", other, me)
		}
	}
	if s.Acknowledged(me, "shop/checkout/9090/canary") {
		t.Error("Acknowledged for a cluster team-a was never sent")
	}
	c.cancel()
	eventually(t, "the closed stream's ACKs to be forgotten", func() bool { return !s.Acknowledged(me, cluster) })
}

// TestConsumerNackHeldOnlyUpToStaleBound: shop's own proxy and a proxy of
// its consumer frontend both reject shop's routes. Both hold the wait at
// first; after the stale bound the consumer is named stale and skipped,
// while shop's own rejection keeps holding.
func TestConsumerNackHeldOnlyUpToStaleBound(t *testing.T) {
	const bound = 300 * time.Millisecond
	s, addr := authzServer(t, Options{StaleAfter: bound})
	publishTenants(t, s, tenants(t, nil))
	const rc = "checkout.shop:9090"
	version, ok := s.Version(resource.RouteType, rc)
	if !ok {
		t.Fatal("route not published")
	}
	for _, ns := range []string{"shop", "frontend"} {
		c := newSotwAs(t, addr, "proxy-"+ns, ns, "default")
		c.request(resource.RouteType, []string{rc}, nil, "")
		c.request(resource.RouteType, []string{rc}, c.recv(), "rejected by "+ns)
	}
	ctx := context.Background()
	var first Sync
	eventually(t, "both rejections", func() bool {
		var err error
		first, err = s.WaitSyncedFor(ctx, "shop", resource.RouteType, rc, version)
		return err == nil && len(first.Nacked) == 2
	})
	if len(first.Stale) != 0 {
		t.Fatalf("stale %q right after the rejections", first.Stale)
	}
	start := time.Now()
	var later Sync
	eventually(t, "the consumer's rejection to pass the stale bound", func() bool {
		var err error
		later, err = s.WaitSyncedFor(ctx, "shop", resource.RouteType, rc, version)
		return err == nil && len(later.Stale) == 1
	})
	if waited := time.Since(start); waited < bound/2 {
		t.Errorf("consumer skipped after %v, before the bound %v", waited, bound)
	}
	if !slices.Equal(later.Stale, []string{"proxy-frontend"}) || !slices.Equal(later.Nacked, []string{"proxy-shop"}) {
		t.Errorf("after the bound: stale %q nacked %q, want the consumer stale and shop's own proxy still nacked", later.Stale, later.Nacked)
	}
	if sy, err := s.WaitSynced(ctx, resource.RouteType, rc, version); err != nil || len(sy.Nacked) != 2 {
		t.Errorf("without an owner every rejection holds: %+v, %v", sy, err)
	}
	peer := s.SyncedNow([]SyncTarget{{TypeURL: resource.RouteType, Name: rc, Version: version, Owner: "shop"}})
	if !slices.Equal(peer.Stale, []string{"proxy-frontend"}) {
		t.Errorf("peer answer stale %q, want the consumer", peer.Stale)
	}
}

// TestStreamLimits: what a client sends cannot make the server grow without
// bound: 10,000 names, 10,000 delta initial versions and an unknown type URL
// each end the stream with InvalidArgument.
func TestStreamLimits(t *testing.T) {
	s, addr := authzServer(t, Options{})
	publishTenants(t, s, tenants(t, nil))
	names := make([]string, 10_000)
	for i := range names {
		names[i] = "route-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
	}
	wantRefused := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", what, err)
		}
	}
	c := newSotwAs(t, addr, "greedy", "team-a", "default")
	c.request(resource.RouteType, names, nil, "")
	_, err := c.stream.Recv()
	wantRefused("10,000 sotw names", err)

	c = newSotwAs(t, addr, "odd", "team-a", "default")
	c.request("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", nil, nil, "")
	_, err = c.stream.Recv()
	wantRefused("unknown type", err)

	d := deltaStream(t, addr, "team-a", "default")
	initial := map[string]string{}
	for _, n := range names {
		initial[n] = "v"
	}
	if err := d.Send(&discovery.DeltaDiscoveryRequest{Node: testNode("greedy-delta"), TypeUrl: resource.ClusterType, InitialResourceVersions: initial}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Recv()
	wantRefused("10,000 delta initial versions", err)

	eventually(t, "refused streams to be forgotten", func() bool { return len(s.Proxies()) == 0 })
}

// TestRequireIdentity: with RequireIdentity a stream without an identity is
// refused, one with an identity is served.
func TestRequireIdentity(t *testing.T) {
	s, addr := authzServer(t, Options{RequireIdentity: true})
	publishTenants(t, s, tenants(t, nil))
	anon := newSotwAs(t, addr, "anonymous", "", "")
	// The server may refuse the stream before reading the request: Send
	// then reports io.EOF, and Recv the status.
	if err := anon.stream.Send(&discovery.DiscoveryRequest{Node: anon.node, TypeUrl: resource.ListenerType}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := anon.stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream without identity: %v, want Unauthenticated", err)
	}
	ok := newSotwAs(t, addr, "known", "team-a", "default")
	ok.request(resource.ListenerType, nil, nil, "")
	if len(ok.recv().GetResources()) == 0 {
		t.Error("stream with an identity got no listeners")
	}
	p := s.Proxies()
	if len(p) != 1 || p[0].Identity != "token:team-a/default" || p[0].Namespace != "team-a" {
		t.Errorf("proxies %+v, want the one stream with its identity", p)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestScopedFormClients: clients of another route form (here gRPC C-core)
// are served from that form's cache, narrowed the same way: a foreign one
// gets nothing of shop's, a granted one gets shop's variant with its
// cohort, and a grant added later reaches the foreign one's explicit
// subscription.
func TestScopedFormClients(t *testing.T) {
	s, addr := authzServer(t, Options{AckTimeout: time.Second})
	publishTenants(t, s, tenants(t, nil))
	const rc = "checkout.shop:9090"
	client := func(ns string) *sotwClient {
		c := newSotwAs(t, addr, "c-core-"+ns, ns, "default")
		c.node.UserAgentName = "gRPC C-core linux Python"
		c.node.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: "1.51.1"}
		return c
	}
	granted := client("frontend")
	granted.request(resource.RouteType, []string{rc}, nil, "")
	resp := granted.recv()
	if !containsBytes(wireBytes(t, resp), shopCohort) || len(resp.GetResources()) != 1 {
		t.Fatalf("granted C-core client got %d resources without shop's cohort route of its form", len(resp.GetResources()))
	}
	// The version describes what this stream was sent: its form's content.
	if want := heldVersion(map[string]string{rc: cache.HashResource(resp.GetResources()[0].GetValue())}); resp.GetVersionInfo() != want {
		t.Fatalf("C-core client got version %q, want %q, the content version of its form's route", resp.GetVersionInfo(), want)
	}
	foreign := client("team-a")
	foreign.request(resource.RouteType, []string{rc}, nil, "")
	resp = foreign.recv()
	if len(resp.GetResources()) != 0 {
		t.Fatalf("foreign C-core client got %q", resourceNames(resp.GetResources()))
	}
	foreign.request(resource.RouteType, []string{rc}, resp, "")
	waitWatching(t, s.formCaches[string(translate.FormLegacyNoRing)], "team-a")
	publishTenants(t, s, tenants(t, &router.Consumers{Namespaces: []string{"frontend", "team-a"}}))
	resp = foreign.recv()
	if got := resourceNames(resp.GetResources()); !slices.Equal(got, []string{rc}) || !containsBytes(wireBytes(t, resp), shopCohort) {
		t.Errorf("after the grant the C-core client of team-a got %q", got)
	}
	if p := s.Proxies(); !slices.ContainsFunc(p, func(p ProxyStatus) bool {
		return p.NodeID == "c-core-team-a" && p.Form == string(translate.FormLegacyNoRing)
	}) {
		t.Errorf("the C-core client is not served its form: %+v", p)
	}
}
