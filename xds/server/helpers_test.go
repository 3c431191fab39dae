package server

import (
	"context"
	"net"
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
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testServer starts a Server with ADS (and opts.LoadReporting) on a loopback
// port and returns it with the address; gopts configure the gRPC server.
func testServer(t testing.TB, opts Options, gopts ...grpc.ServerOption) (*Server, string) {
	t.Helper()
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = testr.NewWithInterface(t, testr.Options{Verbosity: 1})
	}
	s := New(opts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Stop waits for the handlers, so nothing logs after the test ended.
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.WaitForHandlers(true)}, gopts...)...)
	s.Register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	// Cleanups run last first: once the streams are gone, held routes
	// are released, and that logs too.
	t.Cleanup(func() { awaitReleased(t, s) })
	t.Cleanup(g.Stop)
	return s, lis.Addr().String()
}

func adsClient(t testing.TB, addr string) discovery.AggregatedDiscoveryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return discovery.NewAggregatedDiscoveryServiceClient(conn)
}

// sotwClient drives a raw state-of-the-world ADS stream.
type sotwClient struct {
	t      *testing.T
	node   *corev3.Node
	stream grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	cancel context.CancelFunc
}

func newSotw(t *testing.T, addr, node string) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := adsClient(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &sotwClient{t: t, node: testNode(node), stream: st, cancel: cancel}
}

func testNode(id string) *corev3.Node {
	return &corev3.Node{
		Id:                   id,
		UserAgentName:        "test-proxy",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "1.0"},
		ClientFeatures:       []string{"xds.config.resource-in-sotw"},
	}
}

// request sends a request; ack is the response being answered (nil for the
// first request of a type), nack an error message that turns it into a NACK.
func (c *sotwClient) request(typeURL string, names []string, ack *discovery.DiscoveryResponse, nack string) {
	c.t.Helper()
	req := &discovery.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, ResourceNames: names}
	if ack != nil {
		req.ResponseNonce = ack.GetNonce()
		req.VersionInfo = ack.GetVersionInfo()
	}
	if nack != "" {
		req.ErrorDetail = &statuspb.Status{Code: 3, Message: nack}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next response, failing the test if none comes in time.
func (c *sotwClient) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	type result struct {
		r   *discovery.DiscoveryResponse
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := c.stream.Recv()
		ch <- result{r, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			c.t.Fatalf("recv: %v", res.err)
		}
		return res.r
	case <-time.After(10 * time.Second):
		c.t.Fatal("no xDS response within 10s")
	}
	return nil
}

// names decodes the resources of a response and returns them by name.
func decode[M proto.Message](t *testing.T, anys []*anypb.Any, newM func() M) map[string]M {
	t.Helper()
	out := map[string]M{}
	for _, a := range anys {
		m := newM()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		out[resourceName(a.GetValue())] = m
	}
	return out
}

func resourceNames(anys []*anypb.Any) []string {
	set := map[string]struct{}{}
	for _, a := range anys {
		set[resourceName(a.GetValue())] = struct{}{}
	}
	return sortedKeys(set)
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LrsServer:            &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}},
	}
}

func endpoints(name, subZone, host string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{SubZone: subZone},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
					}}},
				}},
				HealthStatus: corev3.HealthStatus_HEALTHY,
			}},
		}},
	}
}

// routes builds a route configuration sending everything to clusters with the
// given weights (one cluster means a plain cluster route).
func routes(name string, weights map[string]uint32) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{}
	if len(weights) == 1 {
		for c := range weights {
			action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: c}
		}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, c := range sortedKeys(weights) {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(weights[c])})
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action},
			}},
		}},
	}
}

// apiListener builds a proxyless gRPC listener using route configuration rds.
func apiListener(t testing.TB, name, rds string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsSource(), RouteConfigName: rds,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, hcm)}}
}

// service builds a consistent resource set for one service: listener and
// route configuration named svc, routing by weights to EDS clusters whose
// endpoints all point at backend.
func service(t testing.TB, svc string, weights map[string]uint32, host string, port uint32) Resources {
	r := Resources{
		resource.ListenerType: {svc: apiListener(t, svc, svc)},
		resource.RouteType:    {svc: routes(svc, weights)},
		resource.ClusterType:  {},
		resource.EndpointType: {},
	}
	for c := range weights {
		r[resource.ClusterType][c] = edsCluster(c)
		r[resource.EndpointType][c] = endpoints(c, "", host, port)
	}
	return r
}

func mustVersion(t testing.TB, m proto.Message) string {
	t.Helper()
	v, err := ContentVersion(m)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// awaitReleased waits until s holds no route back (warmload.go).
func awaitReleased(t testing.TB, s *Server) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.heldMu.Lock()
		releasing := s.releasing
		s.heldMu.Unlock()
		if !releasing {
			return
		}
		if time.Now().After(deadline) {
			t.Error("held routes not released 10s after the streams closed")
			return
		}
		time.Sleep(releaseInterval)
	}
}
