package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/server"
)

// The cost of authentication, measured (not asserted): see "Cost of
// authentication" in docs/security.md. The TokenReview API is the fake of
// helpers_test.go with a fixed latency, so the figures count calls and
// measure Sluice's side, not an API server's.

// reviewLatency stands in for one TokenReview round trip.
const reviewLatency = 2 * time.Millisecond

// BenchmarkTokenReviews counts TokenReview calls per new stream on a cold
// and a warm cache, and for a restart's reconnect of 1,000 streams carrying
// 50 tokens (each op is a fresh server, as after a restart).
func BenchmarkTokenReviews(b *testing.B) {
	for _, tc := range []struct {
		name            string
		streams, tokens int
		warm            bool
	}{
		{"cold/one-stream", 1, 1, false},
		{"warm/one-stream", 1, 1, true},
		{"reconnect/1000-streams-50-tokens", 1000, 50, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var reviews int64
			for range b.N {
				b.StopTimer()
				p := newPlane(b, auth.GuardOptions{MaxStreamsPerIdentity: -1})
				p.rev.delay = reviewLatency
				conns := make([]*grpc.ClientConn, min(tc.streams, 50))
				for i := range conns {
					conns[i] = p.conn(b, nil)
				}
				toks := make([]string, tc.tokens)
				for i := range toks {
					toks[i] = p.rev.token(fmt.Sprintf("system:serviceaccount:ns-%d:sa-%d", i%10, i), "sluice", time.Time{})
				}
				if tc.warm {
					if _, err := stream(context.Background(), conns[0], toks[0], request("")); err != nil {
						b.Fatal(err)
					}
				}
				before := p.rev.calls.Load()
				b.StartTimer()
				var wg sync.WaitGroup
				for i := range tc.streams {
					wg.Go(func() {
						if _, err := stream(context.Background(), conns[i%len(conns)], toks[i%len(toks)], request("")); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				reviews += p.rev.calls.Load() - before
			}
			b.ReportMetric(float64(reviews)/float64(b.N), "reviews/op")
			b.ReportMetric(float64(reviews)/float64(b.N*tc.streams), "reviews/stream")
		})
	}
}

// BenchmarkNewStream measures one new connection and its first ADS
// exchange: TLS with a token (cache warm) against plaintext.
func BenchmarkNewStream(b *testing.B) {
	for _, mode := range []string{"plaintext", "tls+token"} {
		b.Run(mode, func(b *testing.B) {
			p := newPlane(b, auth.GuardOptions{Legacy: mode == "plaintext", LegacyAllowed: allowAll})
			creds := credentials.NewTLS(&tls.Config{RootCAs: p.pool})
			tok, ns := "", "shop"
			if mode == "plaintext" {
				creds = insecure.NewCredentials()
			} else {
				tok = p.rev.token(sa, "sluice", time.Time{})
			}
			b.ResetTimer()
			for range b.N {
				c, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(creds))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := stream(context.Background(), c, tok, request(ns)); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func allowAll(context.Context, string) error { return nil }

// BenchmarkWeightChangeToAllAcked measures a route weight change, from
// Update to every connected proxy's ACK, at 1,000 streams (one connection
// each) from 50 identities in 10 namespaces over TLS with tokens, against
// the same fleet over plaintext. Percentiles are over the b.N changes; run
// with -benchtime=100x or more.
func BenchmarkWeightChangeToAllAcked(b *testing.B) {
	const proxies, identities = 1000, 50
	for _, mode := range []string{"plaintext", "authenticated"} {
		b.Run(mode, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := server.New(server.Options{Logger: logr.Discard(), Registerer: prometheus.NewRegistry()})
			addr, creds, rev := fleetServer(b, s, mode == "authenticated")
			const svc = "checkout.shop"
			r := benchService(b, svc, 90)
			if err := s.Update(ctx, r); err != nil {
				b.Fatal(err)
			}
			for i := range proxies {
				c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				sctx, ns := ctx, fmt.Sprintf("ns-%d", i%identities%10)
				if rev != nil {
					tok := rev.token(fmt.Sprintf("system:serviceaccount:%s:sa-%d", ns, i%identities), "sluice", time.Time{})
					sctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
				}
				n := node(ns)
				n.Id = fmt.Sprintf("proxy-%d", i)
				ackForever(b, sctx, c, n, svc)
			}
			if _, _, err := s.WaitAcked(ctx, resource.RouteType, svc, mustVersion(b, r[resource.RouteType][svc])); err != nil {
				b.Fatal(err)
			}
			durations := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				w := uint32(i%98 + 1)
				r := benchService(b, svc, w)
				start := time.Now()
				if err := s.Update(ctx, r); err != nil {
					b.Fatal(err)
				}
				acked, _, err := s.WaitAcked(ctx, resource.RouteType, svc, mustVersion(b, r[resource.RouteType][svc]))
				if err != nil {
					b.Fatal(err)
				}
				durations = append(durations, time.Since(start))
				if len(acked) != proxies {
					b.Fatalf("%d proxies acked, want %d", len(acked), proxies)
				}
			}
			b.StopTimer()
			slices.Sort(durations)
			b.ReportMetric(ms(durations[len(durations)/2]), "p50-ms")
			b.ReportMetric(ms(durations[(len(durations)*99+99)/100-1]), "p99-ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fleetServer serves s on loopback: guarded with TLS and tokens when auth
// is set (returning the fake TokenReview API), else plaintext.
func fleetServer(b *testing.B, s *server.Server, authenticated bool) (string, credentials.TransportCredentials, *reviewer) {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var opts []grpc.ServerOption
	creds := insecure.NewCredentials()
	var rev *reviewer
	if authenticated {
		p := newPlane(b, auth.GuardOptions{}) // only for its certificate and reviewer
		rev = p.rev
		tokens, err := auth.NewTokenVerifier(auth.TokenOptions{Reviews: rev.client().AuthenticationV1().TokenReviews()})
		if err != nil {
			b.Fatal(err)
		}
		g, err := auth.NewGuard(auth.GuardOptions{Tokens: tokens})
		if err != nil {
			b.Fatal(err)
		}
		pair, err := tls.X509KeyPair(p.bundle.Cert, p.bundle.Key)
		if err != nil {
			b.Fatal(err)
		}
		get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
		opts = append(g.ServerOptions(), grpc.Creds(auth.ServerCredentials(get, func() *x509.CertPool { return p.pool })))
		creds = credentials.NewTLS(&tls.Config{RootCAs: p.pool})
	}
	g := grpc.NewServer(opts...)
	s.Register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	b.Cleanup(g.Stop)
	return lis.Addr().String(), creds, rev
}

// ackForever subscribes to route configuration svc and ACKs every push.
func ackForever(b *testing.B, ctx context.Context, c *grpc.ClientConn, n *corev3.Node, svc string) {
	b.Helper()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c).StreamAggregatedResources(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resource.RouteType, ResourceNames: []string{svc}}); err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			if st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: []string{svc}, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}) != nil {
				return
			}
		}
	}()
}

// benchService is a consistent resource set for one proxyless service
// split stable/canary at 100-canary/canary.
func benchService(b *testing.B, svc string, canary uint32) server.Resources {
	b.Helper()
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		b.Fatal(err)
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     svc,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads, RouteConfigName: svc}},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	weights := map[string]uint32{"stable": 100 - canary, "canary": canary}
	wc := &routev3.WeightedCluster{}
	r := server.Resources{
		resource.ListenerType: {svc: &listenerv3.Listener{Name: svc, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}},
		resource.ClusterType:  {},
		resource.EndpointType: {},
	}
	for _, c := range []string{"canary", "stable"} {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(weights[c])})
		r[resource.ClusterType][c] = &clusterv3.Cluster{
			Name:                 c,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads, ServiceName: c},
		}
		r[resource.EndpointType][c] = &endpointv3.ClusterLoadAssignment{ClusterName: c, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}},
			}}}},
		}}}
	}
	r[resource.RouteType] = map[string]proto.Message{svc: &routev3.RouteConfiguration{Name: svc, VirtualHosts: []*routev3.VirtualHost{{
		Name: svc, Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}},
		}},
	}}}}
	return r
}

func mustVersion(b *testing.B, m proto.Message) string {
	b.Helper()
	v, err := server.ContentVersion(m)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
