package server

import (
	"context"
	"fmt"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/funcr"
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
				st, err := client.StreamAggregatedResources(ctx)
				if err != nil {
					b.Fatal(err)
				}
				node := testNode(fmt.Sprintf("proxy-%d", i))
				if err := st.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.RouteType, ResourceNames: []string{svc}}); err != nil {
					b.Fatal(err)
				}
				go func() {
					for {
						resp, err := st.Recv()
						if err != nil {
							return
						}
						if st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: []string{svc}, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}) != nil {
							return
						}
					}
				}()
			}
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
