package translate

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/router"
)

func service(ns, name string, weight router.Weight) router.Service {
	return router.Service{
		Namespace: ns, Name: name,
		Ports: []router.Port{{Name: "grpc", Number: 9090, Protocol: router.ProtocolGRPC}},
		Endpoints: []router.Endpoint{
			{Pod: name + "-1", IP: "127.0.0.1", Ports: map[string]uint32{"grpc": 9090}, Ready: true, Track: router.TrackStable},
			{Pod: name + "-canary", IP: "127.0.0.2", Ports: map[string]uint32{"grpc": 9090}, Ready: true, Track: router.TrackCanary},
		},
		Strategy: router.Strategy{CanaryWeight: weight},
	}
}

func build(t testing.TB, services ...router.Service) router.Plan {
	t.Helper()
	p, err := router.Build(router.State{Services: services})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return p
}

func TestTranslateRejectsInvalidPlan(t *testing.T) {
	p := build(t, service("shop", "checkout", 500))
	p.Services[0].Ports[0].Routes[0].Clusters[0].Weight = 9000 // sum 9500
	_, err := Translate(p, Options{})
	if !errors.Is(err, router.ErrWeightSum) {
		t.Fatalf("Translate error = %v, want one wrapping router.ErrWeightSum", err)
	}
}

func TestTranslateOptionErrors(t *testing.T) {
	p := build(t, service("shop", "checkout", 0))
	tests := map[string]struct {
		opts Options
		want string
	}{
		"tiny timeout":      {Options{ConnectTimeout: time.Microsecond}, "connect timeout 1µs"},
		"negative timeout":  {Options{ConnectTimeout: -time.Second}, "connect timeout -1s"},
		"bad address":       {Options{SidecarAddress: "localhost"}, `sidecar address "localhost" is not an IP address`},
		"bad domain":        {Options{ClusterDomain: ".cluster.local"}, `cluster domain ".cluster.local"`},
		"domain with colon": {Options{ClusterDomain: "a:b"}, `cluster domain "a:b"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Translate(p, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Translate error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTranslateOptionsApplied(t *testing.T) {
	res, err := Translate(build(t, service("shop", "checkout", 0)), Options{
		ConnectTimeout: 250 * time.Millisecond, SidecarAddress: "127.0.0.1", ClusterDomain: "example.internal",
	})
	if err != nil {
		t.Fatal(err)
	}
	l := get[*listenerv3.Listener](t, res, resource.ListenerType, "outbound_9090/shop")
	if got := l.GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.1" {
		t.Errorf("listener address %q, want 127.0.0.1", got)
	}
	rc := get[*routev3.RouteConfiguration](t, res, resource.RouteType, "outbound_9090/shop")
	if d := rc.VirtualHosts[0].Domains; !contains(d, "checkout.shop.svc.example.internal:9090") {
		t.Errorf("domains %q lack the configured cluster domain", d)
	}
	for _, name := range res.Names(resource.ClusterType) {
		c := get[*clusterv3.Cluster](t, res, resource.ClusterType, name)
		if got := c.GetConnectTimeout().AsDuration(); got != 250*time.Millisecond {
			t.Errorf("cluster %q connect timeout %v, want 250ms", name, got)
		}
	}
}

// get returns a typed resource or fails the test.
func get[M any](t testing.TB, res Resources, typeURL, name string) M {
	t.Helper()
	m, ok := res.Get(typeURL, name)
	if !ok {
		t.Fatalf("no %s %q; have %q", shortType(typeURL), name, res.Names(typeURL))
	}
	typed, ok := m.(M)
	if !ok {
		t.Fatalf("%s %q is a %T", shortType(typeURL), name, m)
	}
	return typed
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestProxylessListener checks what FACTS.md lists as grpc-go's needs: a
// Listener named after the target, an api_listener HCM fetching routes over
// ADS, a filter list ending with the router.
func TestProxylessListener(t *testing.T) {
	s := service("shop", "checkout", 0)
	s.Ports = append(s.Ports, router.Port{Name: "grpc-b", Number: 9091, Protocol: router.ProtocolGRPC},
		router.Port{Name: "http", Number: 8080, Protocol: router.ProtocolHTTP})
	res, err := Translate(build(t, s), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantListeners := []string{"checkout.shop", "checkout.shop:9090", "checkout.shop:9091", "outbound_8080/shop", "outbound_9090/shop", "outbound_9091/shop"}
	if diff := cmp.Diff(wantListeners, res.Names(resource.ListenerType)); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	for name, wantRDS := range map[string]string{"checkout.shop": "checkout.shop:9090", "checkout.shop:9091": "checkout.shop:9091"} {
		l := get[*listenerv3.Listener](t, res, resource.ListenerType, name)
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
			t.Fatalf("listener %q: api_listener is not an HCM: %v", name, err)
		}
		rds := hcm.GetRds()
		if rds.GetRouteConfigName() != wantRDS || rds.GetConfigSource().GetAds() == nil {
			t.Errorf("listener %q: rds = %v, want %q over ADS", name, rds, wantRDS)
		}
		filters := hcm.GetHttpFilters()
		if len(filters) == 0 || filters[len(filters)-1].GetName() != "envoy.filters.http.router" {
			t.Errorf("listener %q: http filters %v do not end with the router", name, filters)
		}
		if l.GetAddress() != nil || len(l.GetFilterChains()) != 0 {
			t.Errorf("listener %q: a proxyless listener must have neither address nor filter chains", name)
		}
	}
}

// TestVersion checks that the version is a content hash.
func TestVersion(t *testing.T) {
	v := func(services ...router.Service) string {
		res, err := Translate(build(t, services...), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Version() == "" {
			t.Fatal("empty version")
		}
		return res.Version()
	}
	a, b := service("shop", "a", 500), service("shop", "b", 0)
	if v(a, b) != v(b, a) {
		t.Error("version depends on input order")
	}
	if v(a, b) != v(a, b) {
		t.Error("version differs between equal plans")
	}
	if v(a, b) == v(service("shop", "a", 501), b) {
		t.Error("version unchanged by a weight change")
	}
	if v(a) == v(a, b) {
		t.Error("version unchanged by a new service")
	}
	var empty Resources
	if empty.Version() != "" || empty.Len() != 0 || len(empty.Types()) != 0 {
		t.Error("zero Resources is not empty")
	}
}

// checkReferences fails if a listener names a missing route configuration,
// a route names a missing cluster, or a cluster has no load assignment: the
// cross-resource consistency a client needs to make progress.
func checkReferences(t interface {
	Helper()
	Fatalf(string, ...any)
}, res Resources) {
	t.Helper()
	has := func(typeURL, name string) bool { _, ok := res.Get(typeURL, name); return ok }
	for _, name := range res.Names(resource.ListenerType) {
		m, _ := res.Get(resource.ListenerType, name)
		l := m.(*listenerv3.Listener)
		hcmAny := l.GetApiListener().GetApiListener()
		if hcmAny == nil {
			hcmAny = l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
		}
		var hcm hcmv3.HttpConnectionManager
		if err := hcmAny.UnmarshalTo(&hcm); err != nil {
			t.Fatalf("listener %q: %v", name, err)
		}
		if rc := hcm.GetRds().GetRouteConfigName(); !has(resource.RouteType, rc) {
			t.Fatalf("listener %q names missing route configuration %q", name, rc)
		}
	}
	for _, name := range res.Names(resource.RouteType) {
		m, _ := res.Get(resource.RouteType, name)
		for _, vh := range m.(*routev3.RouteConfiguration).GetVirtualHosts() {
			if len(vh.GetRoutes()) == 0 {
				t.Fatalf("route configuration %q virtual host %q has no routes", name, vh.GetName())
			}
			for _, r := range vh.GetRoutes() {
				a := r.GetRoute()
				targets := []string{a.GetCluster()}
				if wc := a.GetWeightedClusters(); wc != nil {
					targets = nil
					for _, c := range wc.GetClusters() {
						targets = append(targets, c.GetName())
					}
				}
				for _, m := range a.GetRequestMirrorPolicies() {
					targets = append(targets, m.GetCluster())
				}
				for _, c := range targets {
					if !has(resource.ClusterType, c) {
						t.Fatalf("route configuration %q route %q names missing cluster %q", name, r.GetName(), c)
					}
				}
			}
		}
	}
	for _, name := range res.Names(resource.ClusterType) {
		if !has(resource.EndpointType, name) {
			t.Fatalf("cluster %q has no load assignment", name)
		}
	}
}

// TestBareNamesScopedByNamespace: two namespaces each have a service "a";
// each namespace's sidecars answer the bare name with their own service and
// never see the other's (no grant).
func TestBareNamesScopedByNamespace(t *testing.T) {
	res, err := Translate(build(t, service("shop", "a", 500), service("web", "a", 0)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkReferences(t, res)
	for _, ns := range []string{"shop", "web"} {
		rc := get[*routev3.RouteConfiguration](t, res, resource.RouteType, "outbound_9090/"+ns)
		if len(rc.GetVirtualHosts()) != 1 {
			t.Fatalf("%s: %d virtual hosts, want its own service only", ns, len(rc.GetVirtualHosts()))
		}
		vh := rc.GetVirtualHosts()[0]
		if vh.GetName() != "a."+ns || !contains(vh.GetDomains(), "a") || !contains(vh.GetDomains(), "a:9090") {
			t.Errorf("%s: virtual host %q domains %q, want its own a answering the bare name", ns, vh.GetName(), vh.GetDomains())
		}
		if a, ok := res.Access(resource.RouteType, rc.GetName()); !ok || a.Namespace != ns || a.Allows(otherOf(ns)) {
			t.Errorf("%s: route configuration access %+v, want its namespace only", ns, a)
		}
	}
}

func otherOf(ns string) string {
	if ns == "shop" {
		return "web"
	}
	return "shop"
}

// genState draws a small valid state for the translator's properties.
func genState(t *rapid.T) router.State {
	var st router.State
	seen := map[string]bool{}
	for i, n := 0, rapid.IntRange(0, 4).Draw(t, "services"); i < n; i++ {
		ns := rapid.SampledFrom([]string{"a", "b"}).Draw(t, "ns")
		name := rapid.SampledFrom([]string{"x", "y"}).Draw(t, "name")
		if seen[ns+"/"+name] {
			continue
		}
		seen[ns+"/"+name] = true
		s := router.Service{Namespace: ns, Name: name}
		switch rapid.IntRange(0, 2).Draw(t, "consumers") {
		case 1:
			s.Consumers = router.Consumers{Namespaces: []string{rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "consumer")}}
		case 2:
			s.Consumers = router.Consumers{All: true}
		}
		for _, n := range rapid.SliceOfNDistinct(rapid.SampledFrom([]uint32{80, 9090, 9091}), 1, 3, rapid.ID[uint32]).Draw(t, "ports") {
			s.Ports = append(s.Ports, router.Port{Name: fmt.Sprint("p", n), Number: n,
				Protocol: rapid.SampledFrom([]router.Protocol{router.ProtocolGRPC, router.ProtocolHTTP}).Draw(t, "protocol")})
		}
		for j, m := 0, rapid.IntRange(0, 4).Draw(t, "endpoints"); j < m; j++ {
			e := router.Endpoint{Pod: fmt.Sprint(name, "-", j), IP: fmt.Sprintf("10.%d.0.%d", i, j+1), Ports: map[string]uint32{},
				Ready: rapid.Bool().Draw(t, "ready"), Track: rapid.SampledFrom([]router.Track{router.TrackStable, router.TrackCanary}).Draw(t, "track")}
			for _, p := range s.Ports {
				e.Ports[p.Name] = p.Number
			}
			s.Endpoints = append(s.Endpoints, e)
		}
		w := func(label string) router.Weight {
			return router.Weight(rapid.Uint32Range(0, uint32(router.TotalWeight)).Draw(t, label))
		}
		s.Strategy.CanaryWeight = w("weight")
		if rapid.Bool().Draw(t, "mirror") {
			s.Strategy.Mirror = w("mirror")
		}
		if rapid.Bool().Draw(t, "cohort") {
			s.Strategy.Cohorts = []router.Cohort{{Source: router.SourceCookie, Name: "beta", Match: router.MatchExact, Value: "1"}}
		}
		if rapid.Bool().Draw(t, "sticky") {
			s.Strategy.Sticky = &router.Sticky{Source: router.SourceHeader, Name: "x-user", Share: w("share")}
		}
		st.Services = append(st.Services, s)
	}
	return st
}

// TestPropertyTranslate checks, on random states, that translation succeeds,
// every reference resolves, and the resources and their version do not
// depend on the order of the input.
func TestPropertyTranslate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		p, err := router.Build(st)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		res, err := Translate(p, Options{})
		if err != nil {
			t.Fatalf("Translate: %v", err)
		}
		checkReferences(t, res)
		checkScoping(t, p, res)

		shuffled := router.State{Services: rapid.Permutation(st.Services).Draw(t, "order")}
		for i := range shuffled.Services {
			shuffled.Services[i].Endpoints = rapid.Permutation(shuffled.Services[i].Endpoints).Draw(t, "endpoint order")
			shuffled.Services[i].Ports = rapid.Permutation(shuffled.Services[i].Ports).Draw(t, "port order")
		}
		p2, err := router.Build(shuffled)
		if err != nil {
			t.Fatalf("Build of shuffled state: %v", err)
		}
		res2, err := Translate(p2, Options{})
		if err != nil {
			t.Fatalf("Translate of shuffled state: %v", err)
		}
		if res.Version() != res2.Version() {
			t.Fatalf("version depends on input order: %s vs %s", res.Version(), res2.Version())
		}
		for _, typ := range res.Types() {
			if diff := cmp.Diff(res.ByType(typ), res2.ByType(typ), protocmp.Transform()); diff != "" {
				t.Fatalf("%s depend on input order (-original +shuffled):\n%s", shortType(typ), diff)
			}
		}
	})
}

// checkScoping asserts the visibility rules of the translator: every
// resource has an access; a sidecar route configuration of namespace ns
// holds exactly the virtual hosts of the services ns may see on its port,
// answers bare names only for ns's own services, and references only
// clusters ns may see.
func checkScoping(t interface{ Fatalf(string, ...any) }, p router.Plan, res Resources) {
	for _, typ := range res.Types() {
		for _, name := range res.Names(typ) {
			if _, ok := res.Access(typ, name); !ok {
				t.Fatalf("%s %q has no access", shortType(typ), name)
			}
		}
	}
	for _, name := range res.Names(resource.RouteType) {
		head, ns, isSidecar := strings.Cut(name, "/")
		if !isSidecar {
			continue
		}
		a, _ := res.Access(resource.RouteType, name)
		if a.Namespace != ns || a.Consumers.All || len(a.Consumers.Namespaces) > 0 {
			t.Fatalf("sidecar route %q access %+v, want namespace %q only", name, a, ns)
		}
		m, _ := res.Get(resource.RouteType, name)
		rc := m.(*routev3.RouteConfiguration)
		want := map[string]bool{}
		port := strings.TrimPrefix(head, "outbound_")
		for _, s := range p.Services {
			for _, pp := range s.Ports {
				if fmt.Sprint(pp.Number) == port && s.Consumers.Allows(s.Namespace, ns) {
					want[GRPCListenerName(s.Namespace, s.Name, 0)] = true
				}
			}
		}
		if len(rc.GetVirtualHosts()) != len(want) {
			t.Fatalf("sidecar route %q has %d virtual hosts, want %d", name, len(rc.GetVirtualHosts()), len(want))
		}
		for _, vh := range rc.GetVirtualHosts() {
			if !want[vh.GetName()] {
				t.Fatalf("sidecar route %q of %s shows %q, which %s may not see", name, ns, vh.GetName(), ns)
			}
			own := strings.HasSuffix(vh.GetName(), "."+ns)
			bare := !strings.Contains(vh.GetDomains()[0], ".")
			if bare != own {
				t.Fatalf("sidecar route %q: virtual host %q domains %q (bare name only for %s's own services)", name, vh.GetName(), vh.GetDomains(), ns)
			}
			for _, r := range vh.GetRoutes() {
				for _, c := range r.GetRoute().GetWeightedClusters().GetClusters() {
					if ca, _ := res.Access(resource.ClusterType, c.GetName()); !ca.Allows(ns) {
						t.Fatalf("sidecar route %q of %s names cluster %q it may not see", name, ns, c.GetName())
					}
				}
			}
		}
	}
}
