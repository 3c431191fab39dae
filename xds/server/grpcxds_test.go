package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"github.com/sluice-dev/sluice/xds/lrs"
)

// backend is a grpc.testing.TestService that counts the calls it served and
// answers with its name.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	name  string
	calls atomic.Uint64
	port  uint32
}

func (b *backend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.calls.Add(1)
	return &testgrpc.SimpleResponse{ServerId: b.name}, nil
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, port: uint32(lis.Addr().(*net.TCPAddr).Port)}
	g := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(g, b)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)
	return b
}

// xdsClient connects grpc-go's own xDS client to the control plane at addr
// with node id node and dials target.
func xdsClient(t *testing.T, addr, node, target string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "locality": {"zone": "test"}}
	}`, addr, node)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

func attributeTrack(cluster, _ string) (lrs.Key, bool) {
	parts := strings.Split(cluster, "/")
	if len(parts) != 3 {
		return lrs.Key{}, false
	}
	return lrs.Key{Namespace: parts[0], Service: parts[1], Track: parts[2]}, true
}

// TestGRPCXDSClient runs grpc-go's proxyless xDS client against the server:
// RPCs reach the backend, the client's ACKs are visible, load reports equal
// the backend's own counts, and a switch to a new cluster (removing the old
// one) loses no RPC.
func TestGRPCXDSClient(t *testing.T) {
	loads, err := lrs.NewServer(lrs.Options{Interval: 100 * time.Millisecond, Attribute: attributeTrack})
	if err != nil {
		t.Fatal(err)
	}
	s, addr := testServer(t, Options{LoadReporting: loads, AckTimeout: 30 * time.Second})
	stable, canary := startBackend(t, "stable"), startBackend(t, "canary")
	const svc = "checkout.shop"
	stableKey := lrs.Key{Namespace: "shop", Service: "checkout", Track: "stable"}
	canaryKey := lrs.Key{Namespace: "shop", Service: "checkout", Track: "canary"}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := service(t, svc, map[string]uint32{"shop/checkout/stable": 1}, "127.0.0.1", stable.port)
	if err := s.Update(ctx, first); err != nil {
		t.Fatal(err)
	}
	client := xdsClient(t, addr, "grpc-client-1", svc)
	for i := range 20 {
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("RPC %d: %v", i, err)
		}
		if resp.GetServerId() != "stable" {
			t.Fatalf("RPC %d served by %q, want stable", i, resp.GetServerId())
		}
	}
	for typeURL, named := range first {
		for name, m := range named {
			acked, nacked, err := s.WaitAcked(ctx, typeURL, name, mustVersion(t, m))
			if err != nil || len(acked) != 1 || acked[0] != "grpc-client-1" || len(nacked) != 0 {
				t.Fatalf("WaitAcked(%s %s) = %v, %v, %v; want the gRPC client", typeLabel(typeURL), name, acked, nacked, err)
			}
		}
	}
	ps := s.Proxies()
	if len(ps) != 1 || ps[0].NodeID != "grpc-client-1" || ps[0].UserAgentName != "gRPC Go" || len(ps[0].Types) != 4 {
		t.Fatalf("Proxies() = %+v, want the gRPC Go client subscribed to four types", ps)
	}
	eventually(t, "load reports to equal the stable backend's count", func() bool {
		got := loads.Aggregator().Totals()[stableKey]
		return got.Requests == stable.calls.Load() && got.Errors == 0
	})

	// Introduce the canary cluster through a header-matched route first.
	// grpc-go swaps its route table before its balancer knows a cluster the
	// new table introduces, so RPCs routed to a brand-new cluster in that
	// window fail with "unknown cluster selected for RPC" whatever the server
	// does; a cluster already referenced by a route does not have the problem.
	warm := service(t, svc, map[string]uint32{"shop/checkout/stable": 1}, "127.0.0.1", stable.port)
	warm[resource.ClusterType]["shop/checkout/canary"] = edsCluster("shop/checkout/canary")
	warm[resource.EndpointType]["shop/checkout/canary"] = endpoints("shop/checkout/canary", "", "127.0.0.1", canary.port)
	rc := warm[resource.RouteType][svc].(*routev3.RouteConfiguration)
	rc.VirtualHosts[0].Routes = append([]*routev3.Route{{
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers: []*routev3.HeaderMatcher{{Name: "x-cohort", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
				StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "beta"}},
			}}},
		},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "shop/checkout/canary"}}},
	}}, rc.VirtualHosts[0].Routes...)
	if err := s.Update(ctx, warm); err != nil {
		t.Fatal(err)
	}
	if acked, nacked, err := s.WaitAcked(ctx, resource.RouteType, svc, mustVersion(t, rc)); err != nil || len(acked) != 1 || len(nacked) != 0 {
		t.Fatalf("WaitAcked(warm route) = %v, %v, %v; want the client acked", acked, nacked, err)
	}
	beta := metadata.AppendToOutgoingContext(ctx, "x-cohort", "beta")
	eventually(t, "the beta cohort to reach the canary", func() bool {
		resp, err := client.UnaryCall(beta, &testgrpc.SimpleRequest{})
		return err == nil && resp.GetServerId() == "canary"
	})

	// Switch all traffic to the canary cluster while RPCs keep flowing; the
	// stable cluster is removed only after the client carries the new route,
	// so no RPC fails.
	var failures atomic.Uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
				if failures.Add(1) <= 3 {
					t.Logf("RPC failed: %v", err)
				}
			}
		}
	}()
	next := service(t, svc, map[string]uint32{"shop/checkout/canary": 1}, "127.0.0.1", canary.port)
	if err := s.Update(ctx, next); err != nil {
		t.Fatal(err)
	}
	eventually(t, "traffic to reach the canary", func() bool { return canary.calls.Load() > 10 })
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d RPCs failed during the switch", n)
	}
	if _, ok := s.Version(resource.ClusterType, "shop/checkout/stable"); ok {
		t.Fatal("the stable cluster is still published")
	}
	routeVersion := mustVersion(t, next[resource.RouteType][svc])
	if a, p, n := s.Synced(resource.RouteType, svc, routeVersion); a != 1 || p != 0 || n != 0 {
		t.Fatalf("Synced(new route) = %d, %d, %d; want the client acked", a, p, n)
	}
	eventually(t, "load reports to equal the canary backend's count", func() bool {
		got := loads.Aggregator().Totals()[canaryKey]
		return got.Requests == canary.calls.Load() && got.Errors == 0
	})

	// A route grpc-go rejects (weights summing to zero) is NACKed; the client
	// keeps its last acknowledged route and keeps serving.
	bad := service(t, svc, map[string]uint32{"shop/checkout/canary": 0, "shop/checkout/other": 0}, "127.0.0.1", canary.port)
	if err := s.Update(ctx, bad); err != nil {
		t.Fatal(err)
	}
	acked, nacked, err := s.WaitAcked(ctx, resource.RouteType, svc, mustVersion(t, bad[resource.RouteType][svc]))
	if err != nil || len(acked) != 0 || len(nacked) != 1 || nacked[0] != "grpc-client-1" {
		t.Fatalf("WaitAcked(rejected route) = %v, %v, %v; want a NACK from the gRPC client", acked, nacked, err)
	}
	var routeStatus TypeStatus
	for _, ts := range s.Proxies()[0].Types {
		if ts.TypeURL == resource.RouteType {
			routeStatus = ts
		}
	}
	if routeStatus.LastNack == nil || routeStatus.LastNack.Message == "" || routeStatus.Acked[svc] != routeVersion {
		t.Fatalf("route status after the NACK = %+v, want the NACK message and the previous route still acked", routeStatus)
	}
	t.Logf("grpc-go NACK message: %s", routeStatus.LastNack.Message)
	if resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil || resp.GetServerId() != "canary" {
		t.Fatalf("RPC after the NACK = %v, %v; want it served by the last acknowledged route", resp, err)
	}
}
