package server

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// loadingProxy is a raw ADS stream that behaves as grpc-go's client does
// for what the warm-up wait looks at: it subscribes to route
// configurations, then to the clusters (CDS and EDS) they name, and
// acknowledges every response. A slow one sends its cluster and endpoint
// requests (subscriptions and ACKs) only after delay, as a client busy
// loading would; its route ACKs are prompt.
type loadingProxy struct {
	st     discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   string
	routes []string
	delay  time.Duration
	out    chan timedRequest

	clusters []string
	// named are the clusters each route configuration names: a response
	// carries the changed configurations only.
	named map[string][]string
	last  map[string]*discovery.DiscoveryResponse
}

type timedRequest struct {
	at  time.Time
	req *discovery.DiscoveryRequest
}

func startLoadingProxy(b testing.TB, ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, node string, routes []string, delay time.Duration) {
	st, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p := &loadingProxy{st: st, node: node, routes: routes, delay: delay, out: make(chan timedRequest, 64), last: map[string]*discovery.DiscoveryResponse{}, named: map[string][]string{}}
	go p.send(ctx)
	p.request(resource.RouteType, routes, 0)
	go p.recv()
}

// send sends the queued requests in order, each not before its time.
func (p *loadingProxy) send(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.out:
			if d := time.Until(r.at); d > 0 {
				time.Sleep(d)
			}
			if p.st.Send(r.req) != nil {
				return
			}
		}
	}
}

func (p *loadingProxy) request(typeURL string, names []string, delay time.Duration) {
	req := &discovery.DiscoveryRequest{Node: testNode(p.node), TypeUrl: typeURL, ResourceNames: names}
	if last := p.last[typeURL]; last != nil {
		req.VersionInfo, req.ResponseNonce = last.GetVersionInfo(), last.GetNonce()
	}
	p.out <- timedRequest{at: time.Now().Add(delay), req: req}
}

func (p *loadingProxy) recv() {
	for {
		resp, err := p.st.Recv()
		if err != nil {
			return
		}
		p.last[resp.GetTypeUrl()] = resp
		switch resp.GetTypeUrl() {
		case resource.RouteType:
			p.request(resource.RouteType, p.routes, 0)
			for _, a := range resp.GetResources() {
				rc := &routev3.RouteConfiguration{}
				if a.UnmarshalTo(rc) != nil {
					continue
				}
				var cs []string
				for _, vh := range rc.GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						if c := r.GetRoute().GetCluster(); c != "" {
							cs = append(cs, c)
						}
						for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
							cs = append(cs, cw.GetName())
						}
					}
				}
				p.named[rc.GetName()] = cs
			}
			named := map[string]struct{}{}
			for _, cs := range p.named {
				for _, c := range cs {
					named[c] = struct{}{}
				}
			}
			if cs := sortedKeys(named); !slices.Equal(cs, p.clusters) {
				p.clusters = cs
				p.request(resource.ClusterType, cs, p.delay)
				p.request(resource.EndpointType, cs, p.delay)
			}
		default:
			p.request(resp.GetTypeUrl(), p.clusters, p.delay)
		}
	}
}

// BenchmarkPublishWhileProxiesLoadACanary: n proxies (raw ADS streams, as
// above) carry two services' routes; slow of them take 2s to load a
// cluster. Service checkout's canary is warmed (a warm-up route names its
// cluster), then its weight moves: that publication waits for the slow
// proxies to load the canary. 20ms later, service ledger's weight moves in
// a publication of its own. Reported: the latency of checkout's weight
// publication and of ledger's (from the call to the new route being
// served), median and maximum over the rounds.
func BenchmarkPublishWhileProxiesLoadACanary(b *testing.B) {
	const load = 2 * time.Second
	for _, n := range []int{200, 1000} {
		for _, slow := range []int{0, 3} {
			b.Run(fmt.Sprintf("proxies=%d/slow=%d", n, slow), func(b *testing.B) {
				benchPublishWhileLoading(b, n, slow, load)
			})
		}
	}
}

func benchPublishWhileLoading(b *testing.B, n, slow int, load time.Duration) {
	const checkout, ledger = "checkout.shop", "ledger.shop"
	const stableC, canaryC = "shop/checkout/stable", "shop/checkout/canary"
	const ledgerStable, ledgerCanary = "shop/ledger/stable", "shop/ledger/canary"
	s, addr := testServer(b, Options{AckTimeout: 30 * time.Second, StaleAfter: -1})
	state := func(rc *routev3.RouteConfiguration, ledgerWeight uint32) Resources {
		r := service(b, checkout, map[string]uint32{stableC: 1, canaryC: 1}, "127.0.0.1", 8080)
		r[resource.RouteType][checkout] = rc
		l := service(b, ledger, map[string]uint32{ledgerStable: 100 - ledgerWeight, ledgerCanary: ledgerWeight}, "127.0.0.1", 8081)
		for t, m := range l {
			for k, v := range m {
				r[t][k] = v
			}
		}
		return r
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	publish := func(r Resources) {
		if err := s.Update(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	stableOnly := routes(checkout, map[string]uint32{stableC: 1})
	warm := warmRoutes(checkout, map[string]uint32{stableC: 1}, stableC, canaryC)
	weighted := warmRoutes(checkout, map[string]uint32{stableC: 90, canaryC: 10}, stableC, canaryC)
	publish(state(stableOnly, 10))
	client := adsClient(b, addr)
	for i := range n {
		d := time.Duration(0)
		if i < slow {
			d = load
		}
		startLoadingProxy(b, ctx, client, fmt.Sprint("proxy-", i), []string{checkout, ledger}, d)
	}
	synced := func(name string, rc *routev3.RouteConfiguration) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			acked, _, _ := s.Synced(resource.RouteType, name, mustVersion(b, rc))
			if acked == n {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d proxies carry %s", acked, n, name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	noneLoaded := func(c string) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			loaded := false
			for _, p := range s.Proxies() {
				for _, ts := range p.Types {
					if ts.TypeURL == resource.ClusterType && slices.Contains(ts.Subscribed, c) {
						loaded = true
					}
				}
			}
			if !loaded {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("proxies still subscribe to %s", c)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var own, other []time.Duration
	ledgerWeight := uint32(10)
	b.ResetTimer()
	for range b.N {
		publish(state(stableOnly, ledgerWeight))
		synced(checkout, stableOnly)
		noneLoaded(canaryC)
		publish(state(warm, ledgerWeight))
		synced(checkout, warm)

		start := time.Now()
		done := make(chan time.Duration)
		go func() {
			publish(state(weighted, ledgerWeight))
			want := mustVersion(b, weighted)
			for {
				if v, _ := s.Version(resource.RouteType, checkout); v == want {
					break
				}
				time.Sleep(time.Millisecond)
			}
			done <- time.Since(start)
		}()
		time.Sleep(20 * time.Millisecond)
		ledgerWeight = 30 - ledgerWeight // 10, 20, 10, ...
		next := state(weighted, ledgerWeight)
		want := mustVersion(b, next[resource.RouteType][ledger])
		lstart := time.Now()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			publish(next)
		}()
		for {
			if v, _ := s.Version(resource.RouteType, ledger); v == want {
				break
			}
			time.Sleep(time.Millisecond)
		}
		other = append(other, time.Since(lstart))
		own = append(own, <-done)
		wg.Wait()
	}
	b.StopTimer()
	report := func(ds []time.Duration, what string) {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		b.ReportMetric(float64(ds[len(ds)/2].Milliseconds()), what+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)-1].Milliseconds()), what+"-max-ms")
	}
	report(own, "checkout")
	report(other, "ledger")
}
