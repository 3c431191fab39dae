package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/go-logr/logr/funcr"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/translate"
)

// BenchmarkRouteUpdateToAllAcked measures one route change, from Update to
// every connected proxy (raw sotw ADS streams over loopback gRPC, answering
// each push with an ACK) acknowledging it via WaitAcked.
func BenchmarkRouteUpdateToAllAcked(b *testing.B) {
	for _, proxies := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("proxies=%d", proxies), func(b *testing.B) {
			s, addr := testServer(b, Options{Logger: funcr.New(func(string, string) {}, funcr.Options{})})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const svc = "checkout.shop"
			r := service(b, svc, map[string]uint32{"stable": 90, "canary": 10}, "127.0.0.1", 80)
			if err := s.Update(ctx, r); err != nil {
				b.Fatal(err)
			}
			client := adsClient(b, addr)
			for i := range proxies {
				ackingRouteStream(b, ctx, client, fmt.Sprintf("proxy-%d", i), []string{svc})
			}
			waitSubscribed(b, s, svc, proxies)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := uint32(i%99 + 1)
				r[resource.RouteType][svc] = routes(svc, map[string]uint32{"stable": 100 - w, "canary": w})
				if err := s.Update(ctx, r); err != nil {
					b.Fatal(err)
				}
				acked, _, err := s.WaitAcked(ctx, resource.RouteType, svc, mustVersion(b, r[resource.RouteType][svc]))
				if err != nil {
					b.Fatal(err)
				}
				if len(acked) != proxies {
					b.Fatalf("%d proxies acked, want %d", len(acked), proxies)
				}
			}
		})
	}
}

// BenchmarkScopedWeightChangeToAllAcked measures a weight change of a
// service granted to every namespace, from Publish to all of 1,000 proxies
// (raw sotw ADS streams over loopback gRPC, 100 in each of 10 namespaces,
// from 50 identities, each subscribed to the service's proxyless route and
// its namespace's sidecar route, ACKing every push) acknowledging both
// changed routes. "scoped" streams carry an identity (their responses are
// narrowed to their namespace's grants); "unscoped" ones carry none and see
// everything: the difference is the cost of authorization.
func BenchmarkScopedWeightChangeToAllAcked(b *testing.B) {
	const namespaces, perNamespace, identitiesPerNamespace, servicesPerNamespace = 10, 100, 5, 5
	plans := make([]translate.Resources, 99)
	for i := range plans {
		plans[i] = fleetPlan(b, namespaces, servicesPerNamespace, router.Weight((i+1)*100))
	}
	for _, scoped := range []bool{false, true} {
		b.Run(scopedName(scoped), func(b *testing.B) {
			s, addr := authzServer(b, Options{Logger: funcr.New(func(string, string) {}, funcr.Options{})})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			publishTenants(b, s, plans[0])
			client := adsClient(b, addr)
			for i := range namespaces * perNamespace {
				ns := fmt.Sprintf("ns-%d", i/perNamespace)
				sctx := ctx
				if scoped {
					sctx = asIdentity(ctx, ns, fmt.Sprintf("sa-%d", i%identitiesPerNamespace))
				}
				ackingRouteStream(b, sctx, client, fmt.Sprintf("proxy-%d", i), []string{hot, translate.SidecarListenerName(ns, 9090)})
			}
			waitAll := func() {
				for _, rc := range append([]string{hot}, sidecarRoutes(namespaces)...) {
					v, _ := s.Version(resource.RouteType, rc)
					sy, err := s.WaitSynced(ctx, resource.RouteType, rc, v)
					if err != nil {
						b.Fatal(err)
					}
					if want := perNamespace; rc == hot && len(sy.Acked) != namespaces*want || rc != hot && len(sy.Acked) != want {
						b.Fatalf("%s: %d proxies acked", rc, len(sy.Acked))
					}
				}
			}
			waitSubscribed(b, s, hot, namespaces*perNamespace)
			waitAll()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				publishTenants(b, s, plans[(i+1)%len(plans)])
				waitAll()
			}
		})
	}
}

// hot is the route configuration of the fleet's service granted to every
// namespace, whose weight the authorization benchmarks change.
const hot = "svc-0.ns-0:9090"

func scopedName(scoped bool) string {
	if scoped {
		return "scoped"
	}
	return "unscoped"
}

// fleetPlan translates n namespaces of m gRPC services each; svc-0 of ns-0
// is granted to every namespace and runs a canary at weight w.
func fleetPlan(b testing.TB, n, m int, w router.Weight) translate.Resources {
	var st router.State
	for i := range n {
		for j := range m {
			svc := router.Service{
				Namespace: fmt.Sprintf("ns-%d", i), Name: fmt.Sprintf("svc-%d", j),
				Ports: []router.Port{{Name: "grpc", Number: 9090, Protocol: router.ProtocolGRPC}},
				Endpoints: []router.Endpoint{
					{Pod: "stable-1", IP: fmt.Sprintf("127.1.%d.%d", i, j+1), Ports: map[string]uint32{"grpc": 19090}, Ready: true, Track: router.TrackStable},
					{Pod: "canary-1", IP: fmt.Sprintf("127.2.%d.%d", i, j+1), Ports: map[string]uint32{"grpc": 19090}, Ready: true, Track: router.TrackCanary},
				},
			}
			if i == 0 && j == 0 {
				svc.Consumers = router.Consumers{All: true}
				svc.Strategy.CanaryWeight = w
			}
			st.Services = append(st.Services, svc)
		}
	}
	plan, err := router.Build(st)
	if err != nil {
		b.Fatal(err)
	}
	res, err := translate.Translate(plan, translate.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return res
}

func sidecarRoutes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = translate.SidecarListenerName(fmt.Sprintf("ns-%d", i), 9090)
	}
	return out
}

// BenchmarkScopedNotify isolates the cost of authorization in the cache:
// one weight change of a service granted to every namespace, answered to
// 1,000 sotw route watches (10 namespaces, each watch naming the
// service's proxyless route and its namespace's sidecar route), from
// UpdateResources to every response encoded and every watch re-opened (as
// its ACK would). "scoped" watches are narrowed to their namespace's
// grants; "unscoped" ones are not. No gRPC: only the cache's share.
func BenchmarkScopedNotify(b *testing.B) {
	const namespaces, perNamespace = 10, 100
	plans := []translate.Resources{fleetPlan(b, namespaces, 5, 1000), fleetPlan(b, namespaces, 5, 2000)}
	for _, scoped := range []bool{false, true} {
		b.Run(scopedName(scoped), func(b *testing.B) {
			var grants atomic.Pointer[grantIndex]
			grants.Store(newGrantIndex(GrantsOf(plans[0])))
			lc := cache.NewLinearCache(resource.RouteType)
			routes := map[string]types.Resource{}
			for n, m := range plans[0].ByType(resource.RouteType) {
				routes[n] = m
			}
			lc.SetResources(routes)
			type watcher struct {
				sub  stream.Subscription
				ns   string
				ch   chan cache.Response
				last string
			}
			open := func(w *watcher) {
				var sub cache.Subscription = &w.sub
				if scoped {
					sub = &scopedSub{inner: &w.sub, typeURL: resource.RouteType, namespace: w.ns, grants: &grants}
				}
				req := &discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: []string{hot, translate.SidecarListenerName(w.ns, 9090)}, VersionInfo: w.last}
				if _, err := lc.CreateWatch(req, sub, w.ch); err != nil {
					b.Fatal(err)
				}
			}
			answer := func(w *watcher) {
				resp := <-w.ch
				out, err := resp.GetDiscoveryResponse()
				if err != nil {
					b.Fatal(err)
				}
				w.sub.SetReturnedResources(resp.GetReturnedResources())
				w.last = out.GetVersionInfo()
			}
			ws := make([]*watcher, namespaces*perNamespace)
			for i := range ws {
				ns := fmt.Sprintf("ns-%d", i/perNamespace)
				ws[i] = &watcher{sub: stream.NewSotwSubscription([]string{hot, translate.SidecarListenerName(ns, 9090)}, false), ns: ns, ch: make(chan cache.Response, 1)}
				open(ws[i])
				answer(ws[i])
				open(ws[i])
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				next := plans[(i+1)%2]
				up := map[string]types.Resource{hot: next.ByType(resource.RouteType)[hot]}
				for _, rc := range sidecarRoutes(namespaces) {
					up[rc] = next.ByType(resource.RouteType)[rc]
				}
				if err := lc.UpdateResources(up, nil); err != nil {
					b.Fatal(err)
				}
				for _, w := range ws {
					answer(w)
					open(w)
				}
			}
		})
	}
}

// waitSubscribed polls until n proxies carry the published route rc:
// streams register their first request asynchronously.
func waitSubscribed(b *testing.B, s *Server, rc string, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		v, _ := s.Version(resource.RouteType, rc)
		if acked, _, _ := s.Synced(resource.RouteType, rc, v); acked == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d proxies did not all carry %s", n, rc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ackingRouteStream opens a sotw stream as node, subscribed to the route
// configurations names, that acknowledges every response until ctx ends.
func ackingRouteStream(b *testing.B, ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, node string, names []string) {
	b.Helper()
	st, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: testNode(node), TypeUrl: resource.RouteType, ResourceNames: names}); err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			if st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: names, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}) != nil {
				return
			}
		}
	}()
}
