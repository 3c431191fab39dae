package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

func twoServices(t *testing.T) Resources {
	r := service(t, "checkout.shop", map[string]uint32{"shop/checkout/stable": 90, "shop/checkout/canary": 10}, "127.0.0.1", 8080)
	cart := service(t, "cart.shop", map[string]uint32{"shop/cart/stable": 1}, "127.0.0.2", 8080)
	for typeURL, named := range cart {
		for n, m := range named {
			r[typeURL][n] = m
		}
	}
	return r
}

func TestSotwReceivesOnlySubscribed(t *testing.T) {
	s, addr := testServer(t, Options{})
	ctx := context.Background()
	r := twoServices(t)
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	c := newSotw(t, addr, "proxyless-1")

	c.request(resource.ClusterType, []string{"shop/checkout/canary"}, nil, "")
	cds := c.recv()
	if diff := cmp.Diff([]string{"shop/checkout/canary"}, resourceNames(cds.GetResources())); diff != "" {
		t.Fatalf("CDS names (-want +got):\n%s", diff)
	}
	c.request(resource.ClusterType, []string{"shop/checkout/canary"}, cds, "")

	c.request(resource.EndpointType, []string{"shop/checkout/canary"}, nil, "")
	eds := c.recv()
	if diff := cmp.Diff([]string{"shop/checkout/canary"}, resourceNames(eds.GetResources())); diff != "" {
		t.Fatalf("EDS names (-want +got):\n%s", diff)
	}
	c.request(resource.EndpointType, []string{"shop/checkout/canary"}, eds, "")

	v1 := mustVersion(t, r[resource.EndpointType]["shop/checkout/canary"])
	if _, _, err := s.WaitAcked(ctx, resource.EndpointType, "shop/checkout/canary", v1); err != nil {
		t.Fatal(err)
	}
	if a, p, n := s.Synced(resource.EndpointType, "shop/checkout/canary", v1); a != 1 || p != 0 || n != 0 {
		t.Fatalf("Synced = %d acked, %d pending, %d nacked; want 1, 0, 0", a, p, n)
	}

	// Publishing the same content again changes nothing: no new version.
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := s.versions[resource.EndpointType]; got != 1 {
		t.Fatalf("endpoint cache version after a no-op update = %d, want 1", got)
	}

	// An unrelated change sends nothing; a change to the subscribed
	// endpoints sends a new version with just that resource.
	r[resource.EndpointType]["shop/cart/stable"] = endpoints("shop/cart/stable", "", "127.0.0.3", 8080)
	r[resource.EndpointType]["shop/checkout/canary"] = endpoints("shop/checkout/canary", "", "127.0.0.9", 8080)
	v2 := mustVersion(t, r[resource.EndpointType]["shop/checkout/canary"])
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	eds2 := c.recv()
	if eds2.GetTypeUrl() != resource.EndpointType || eds2.GetVersionInfo() == eds.GetVersionInfo() {
		t.Fatalf("got %s version %q, want new endpoints after %q", eds2.GetTypeUrl(), eds2.GetVersionInfo(), eds.GetVersionInfo())
	}
	got := decode(t, eds2.GetResources(), func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} })
	if diff := cmp.Diff([]string{"shop/checkout/canary"}, sortedKeys(got)); diff != "" {
		t.Fatalf("EDS update names (-want +got):\n%s", diff)
	}
	if a, p, _ := s.Synced(resource.EndpointType, "shop/checkout/canary", v2); a != 0 || p != 1 {
		t.Fatalf("before the ACK: %d acked, %d pending; want 0, 1", a, p)
	}
	c.request(resource.EndpointType, []string{"shop/checkout/canary"}, eds2, "")
	acked, nacked, err := s.WaitAcked(ctx, resource.EndpointType, "shop/checkout/canary", v2)
	if err != nil || !cmp.Equal(acked, []string{"proxyless-1"}) || len(nacked) != 0 {
		t.Fatalf("WaitAcked = %v, %v, %v; want [proxyless-1], [], nil", acked, nacked, err)
	}
}

func TestDeltaReceivesOnlySubscribed(t *testing.T) {
	s, addr := testServer(t, Options{})
	ctx := context.Background()
	r := twoServices(t)
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	stream, err := adsClient(t, addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := testNode("delta-1")
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{"cart.shop"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	want := mustVersion(t, r[resource.RouteType]["cart.shop"])
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "cart.shop" || resp.GetResources()[0].GetVersion() != want {
		t.Fatalf("delta RDS = %v, want only cart.shop at content version %s", resp.GetResources(), want)
	}
	if a, p, _ := s.Synced(resource.RouteType, "cart.shop", want); a != 0 || p != 1 {
		t.Fatalf("before the ACK: %d acked, %d pending; want 0, 1", a, p)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	acked, _, err := s.WaitAcked(ctx, resource.RouteType, "cart.shop", want)
	if err != nil || !cmp.Equal(acked, []string{"delta-1"}) {
		t.Fatalf("WaitAcked = %v, %v; want [delta-1]", acked, err)
	}

	// Change both routes: the delta stream receives only its own.
	r[resource.RouteType]["cart.shop"] = routes("cart.shop", map[string]uint32{"shop/cart/stable": 1, "shop/checkout/stable": 1})
	r[resource.RouteType]["checkout.shop"] = routes("checkout.shop", map[string]uint32{"shop/checkout/stable": 1})
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	want = mustVersion(t, r[resource.RouteType]["cart.shop"])
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "cart.shop" || resp.GetResources()[0].GetVersion() != want {
		t.Fatalf("delta RDS update = %v, want only cart.shop at %s", resp.GetResources(), want)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.WaitAcked(ctx, resource.RouteType, "cart.shop", want); err != nil {
		t.Fatal(err)
	}
	ps := s.Proxies()
	if len(ps) != 1 || !ps[0].Delta || ps[0].UserAgentName != "test-proxy" || ps[0].UserAgentVersion != "1.0" {
		t.Fatalf("Proxies() = %+v, want one delta stream of test-proxy 1.0", ps)
	}
	if diff := cmp.Diff(map[string]string{"cart.shop": want}, ps[0].Types[0].Acked); diff != "" {
		t.Fatalf("acked routes (-want +got):\n%s", diff)
	}
}

func TestNackKeepsLastAcked(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, addr := testServer(t, Options{Registerer: reg})
	ctx := context.Background()
	r := twoServices(t)
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	good := mustVersion(t, r[resource.RouteType]["checkout.shop"])
	c := newSotw(t, addr, "envoy-1")
	c.request(resource.RouteType, []string{"checkout.shop"}, nil, "")
	first := c.recv()
	c.request(resource.RouteType, []string{"checkout.shop"}, first, "")
	if _, _, err := s.WaitAcked(ctx, resource.RouteType, "checkout.shop", good); err != nil {
		t.Fatal(err)
	}

	r[resource.RouteType]["checkout.shop"] = routes("checkout.shop", map[string]uint32{"shop/checkout/stable": 50, "shop/checkout/canary": 50})
	bad := mustVersion(t, r[resource.RouteType]["checkout.shop"])
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	second := c.recv()
	got := decode(t, second.GetResources(), func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
	if w := got["checkout.shop"].GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters()[0].GetWeight().GetValue(); w != 50 {
		t.Fatalf("pushed weight %d, want 50", w)
	}
	// The proxy rejects it: the request carries its last good version.
	req := &discovery.DiscoveryRequest{
		TypeUrl: resource.RouteType, ResourceNames: []string{"checkout.shop"},
		VersionInfo: first.GetVersionInfo(), ResponseNonce: second.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "weights must sum to 100"},
	}
	if err := c.stream.Send(req); err != nil {
		t.Fatal(err)
	}
	acked, nacked, err := s.WaitAcked(ctx, resource.RouteType, "checkout.shop", bad)
	if err != nil || len(acked) != 0 || !cmp.Equal(nacked, []string{"envoy-1"}) {
		t.Fatalf("WaitAcked(bad) = %v, %v, %v; want [], [envoy-1], nil", acked, nacked, err)
	}
	if a, p, n := s.Synced(resource.RouteType, "checkout.shop", good); a != 1 || p != 0 || n != 0 {
		t.Fatalf("Synced(good) = %d, %d, %d; want the proxy still on the good version", a, p, n)
	}
	if n := testutil.ToFloat64(s.tracker.metrics.nacks.WithLabelValues("route")); n != 1 {
		t.Fatalf("sluice_xds_nacks_total{type=route} = %v, want 1", n)
	}
	ps := s.Proxies()
	if len(ps) != 1 {
		t.Fatalf("Proxies() = %+v, want one", ps)
	}
	ts := ps[0].Types[0]
	want := &Nack{TypeURL: resource.RouteType, Version: second.GetVersionInfo(), Message: "weights must sum to 100", Resources: []string{"checkout.shop"}}
	if diff := cmp.Diff(want, ts.LastNack, cmpIgnoreAt); diff != "" {
		t.Fatalf("last NACK (-want +got):\n%s", diff)
	}
	if ts.AckedVersion != first.GetVersionInfo() || ts.Acked["checkout.shop"] != good {
		t.Fatalf("acked %q %v, want version %q with the good content", ts.AckedVersion, ts.Acked, first.GetVersionInfo())
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_xds_connected_proxies", "sluice_xds_pushes_total", "sluice_xds_nacks_total", "sluice_xds_push_ack_seconds"); err != nil || n < 4 {
		t.Fatalf("xDS metric series = %d (%v), want all four names present", n, err)
	}
	if v := testutil.ToFloat64(s.tracker.metrics.connected); v != 1 {
		t.Fatalf("connected proxies = %v, want 1", v)
	}
	c.cancel()
	eventually(t, "the closed stream to leave Proxies()", func() bool { return len(s.Proxies()) == 0 })
	if v := testutil.ToFloat64(s.tracker.metrics.connected); v != 0 {
		t.Fatalf("connected proxies after close = %v, want 0", v)
	}
}

var cmpIgnoreAt = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".At" }, cmp.Ignore())

// TestUpdateRejectsInvalid checks that a bad resource anywhere in an update
// publishes nothing.
func TestUpdateRejectsInvalid(t *testing.T) {
	cases := map[string]struct {
		mutate func(t *testing.T, r Resources)
		want   string
	}{
		"fails ValidateAll": {
			mutate: func(t *testing.T, r Resources) {
				r[resource.EndpointType][""] = &endpointv3.ClusterLoadAssignment{}
			},
			want: "ClusterName: value length must be at least 1",
		},
		"route to a missing cluster": {
			mutate: func(t *testing.T, r Resources) {
				delete(r[resource.ClusterType], "shop/checkout/canary")
			},
			want: `route "checkout.shop" references cluster "shop/checkout/canary", which is not in the update`,
		},
		"EDS cluster without endpoints": {
			mutate: func(t *testing.T, r Resources) {
				delete(r[resource.EndpointType], "shop/cart/stable")
			},
			want: `cluster "shop/cart/stable" references endpoints "shop/cart/stable"`,
		},
		"listener to a missing route": {
			mutate: func(t *testing.T, r Resources) {
				r[resource.ListenerType]["other.shop"] = apiListener(t, "other.shop", "other.shop")
			},
			want: `listener "other.shop" references route "other.shop"`,
		},
		"envoy listener with an inline route to a missing cluster": {
			mutate: func(t *testing.T, r Resources) {
				hcm := &hcmv3.HttpConnectionManager{
					StatPrefix:     "outbound",
					RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routes("inline", map[string]uint32{"shop/gone/stable": 1})},
					HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}},
				}
				r[resource.ListenerType]["outbound"] = &listenerv3.Listener{
					Name: "outbound",
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15001},
					}}},
					FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
						Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
					}}}},
				}
			},
			want: `listener "outbound" references cluster "shop/gone/stable"`,
		},
		"key differs from name": {
			mutate: func(t *testing.T, r Resources) {
				r[resource.ClusterType]["alias"] = edsCluster("shop/cart/stable")
			},
			want: `names itself "shop/cart/stable"`,
		},
		"wrong message type": {
			mutate: func(t *testing.T, r Resources) {
				r[resource.ClusterType]["x"] = endpoints("x", "", "127.0.0.1", 1)
			},
			want: "message is type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment, want type.googleapis.com/envoy.config.cluster.v3.Cluster",
		},
		"unsupported type": {
			mutate: func(t *testing.T, r Resources) {
				r[resource.SecretType] = nil
			},
			want: "is not served",
		},
		"nil message": {
			mutate: func(t *testing.T, r Resources) { r[resource.ClusterType][""] = (*clusterv3.Cluster)(nil) },
			want:   `cluster "": nil message`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, _ := testServer(t, Options{})
			good := service(t, "cart.shop", map[string]uint32{"shop/cart/stable": 1}, "127.0.0.1", 80)
			if err := s.Update(context.Background(), good); err != nil {
				t.Fatal(err)
			}
			before := mustVersion(t, good[resource.RouteType]["cart.shop"])
			r := twoServices(t)
			r[resource.RouteType]["cart.shop"] = routes("cart.shop", map[string]uint32{"shop/cart/stable": 1, "shop/checkout/stable": 1})
			tc.mutate(t, r)
			err := s.Update(context.Background(), r)
			if err == nil || !contains(err.Error(), tc.want) || !contains(err.Error(), "nothing published") {
				t.Fatalf("Update error = %v, want one containing %q", err, tc.want)
			}
			if v, _ := s.Version(resource.RouteType, "cart.shop"); v != before {
				t.Fatalf("route version changed to %s after a rejected update", v)
			}
			if _, ok := s.Version(resource.ListenerType, "checkout.shop"); ok {
				t.Fatal("a rejected update published a listener")
			}
			for _, c := range s.caches {
				for n, m := range c.GetResources() {
					if err := m.(validator).ValidateAll(); err != nil {
						t.Fatalf("cache holds invalid %s: %v", n, err)
					}
				}
			}
		})
	}
}

func TestWaitAckedSuperseded(t *testing.T) {
	s, addr := testServer(t, Options{})
	ctx := context.Background()
	r := twoServices(t)
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	c := newSotw(t, addr, "slow-proxy")
	c.request(resource.RouteType, []string{"cart.shop"}, nil, "")
	c.recv() // never acknowledged
	old := mustVersion(t, r[resource.RouteType]["cart.shop"])
	errc := make(chan error, 1)
	go func() {
		_, _, err := s.WaitAcked(ctx, resource.RouteType, "cart.shop", old)
		errc <- err
	}()
	r[resource.RouteType]["cart.shop"] = routes("cart.shop", map[string]uint32{"shop/cart/stable": 1, "shop/checkout/stable": 1})
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrSuperseded) {
		t.Fatalf("WaitAcked on replaced content = %v, want ErrSuperseded", err)
	}
	if _, _, err := s.WaitAcked(ctx, resource.RouteType, "nope", old); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("WaitAcked on an unknown resource = %v, want ErrSuperseded", err)
	}
	// The proxy never answers the current content either: the wait ends with
	// the context and names it.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	cur := mustVersion(t, r[resource.RouteType]["cart.shop"])
	if _, _, err := s.WaitAcked(short, resource.RouteType, "cart.shop", cur); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "slow-proxy") {
		t.Fatalf("WaitAcked with a silent proxy = %v, want a deadline error naming slow-proxy", err)
	}
}

func TestMetricsRegistrationFailureIsLoud(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(Options{Registerer: reg})
	s := New(Options{Registerer: reg}) // same names again
	err := s.Update(context.Background(), twoServices(t))
	if err == nil || !strings.Contains(err.Error(), "metrics could not be registered") {
		t.Fatalf("Update with unregistered metrics = %v, want a clear error", err)
	}
}
