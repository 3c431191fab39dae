package lrs

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// attributeByName attributes clusters named namespace/service/track and, for
// clusters named namespace/service, takes the track from the sub_zone.
func attributeByName(cluster, subZone string) (Key, bool) {
	parts := strings.Split(cluster, "/")
	switch {
	case len(parts) == 3:
		return Key{Namespace: parts[0], Service: parts[1], Track: parts[2]}, true
	case len(parts) == 2 && subZone != "":
		return Key{Namespace: parts[0], Service: parts[1], Track: subZone}, true
	}
	return Key{}, false
}

func TestNewServerInterval(t *testing.T) {
	cases := map[string]struct {
		in      time.Duration
		want    time.Duration
		wantErr string
	}{
		"default":  {in: 0, want: DefaultInterval},
		"explicit": {in: 250 * time.Millisecond, want: 250 * time.Millisecond},
		"negative": {in: -time.Second, wantErr: "must be > 0"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := NewServer(Options{Interval: tc.in, Attribute: attributeByName})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewServer(%s) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Interval() != tc.want || s.Interval() <= 0 {
				t.Fatalf("interval = %s, want %s", s.Interval(), tc.want)
			}
		})
	}
	if _, err := NewServer(Options{}); err == nil || !strings.Contains(err.Error(), "Attribute") {
		t.Fatalf("NewServer without attribution: error = %v, want one naming Attribute", err)
	}
}

// serve starts g on a loopback port and returns a client connection to it.
func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	return serveWith(t, register)
}

// serveWith is serve with server options.
func serveWith(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
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

func locality(subZone string, ok, failed, inProgress uint64) *endpointv3.UpstreamLocalityStats {
	return &endpointv3.UpstreamLocalityStats{
		Locality:                &corev3.Locality{SubZone: subZone},
		TotalSuccessfulRequests: ok,
		TotalErrorRequests:      failed,
		TotalIssuedRequests:     ok + failed,
		TotalRequestsInProgress: inProgress,
	}
}

func TestStreamAggregatesReports(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := NewServer(Options{Interval: 300 * time.Millisecond, Attribute: attributeByName, Registerer: reg, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	conn := serve(t, func(g *grpc.Server) { s.Register(g) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "client-1"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetSendAllClusters() || resp.GetLoadReportingInterval().AsDuration() != 300*time.Millisecond {
		t.Fatalf("first response = %v, want send_all_clusters and a 300ms interval", resp)
	}
	reports := []*lrsv3.LoadStatsRequest{
		{ClusterStats: []*endpointv3.ClusterStats{
			{ClusterName: "shop/checkout/stable", UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{locality("", 90, 1, 2)}},
			{ClusterName: "shop/checkout", UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{locality("canary", 8, 2, 1)}},
			{ClusterName: "kube-system/dns-upstream", UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{locality("", 7, 0, 0)}},
		}},
		{ClusterStats: []*endpointv3.ClusterStats{
			{ClusterName: "shop/checkout/stable", UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{locality("", 10, 0, 0)}},
		}},
	}
	for _, r := range reports {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	want := map[Key]Totals{
		stable: {Requests: 101, Errors: 1, Issued: 101},
		canary: {Requests: 10, Errors: 2, Issued: 10},
	}
	eventually(t, "both reports aggregated", func() bool { return cmp.Equal(want, s.Aggregator().Totals()) })
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("shop", "checkout", "canary")); got != 10 {
		t.Errorf("sluice_route_requests_total{canary} = %v, want 10", got)
	}
	if got := testutil.ToFloat64(s.metrics.errors.WithLabelValues("shop", "checkout", "stable")); got != 1 {
		t.Errorf("sluice_route_errors_total{stable} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.metrics.unknown); got != 7 {
		t.Errorf("unattributed requests = %v, want 7", got)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_route_requests_total", "sluice_route_errors_total", "sluice_route_in_flight"); err != nil || n != 6 {
		t.Errorf("registered route series = %d (%v), want 6", n, err)
	}
}

func TestStreamInFlightFollowsLatestReport(t *testing.T) {
	s, err := NewServer(Options{Attribute: attributeByName})
	if err != nil {
		t.Fatal(err)
	}
	conn := serve(t, func(g *grpc.Server) { s.Register(g) })
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "c"}, ClusterStats: []*endpointv3.ClusterStats{
		{ClusterName: "shop/checkout/canary", UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{locality("", 1, 0, 4)}},
	}}
	if err := stream.Send(first); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "in-flight 4", func() bool { return s.Aggregator().Totals()[canary].InFlight == 4 })
	// A report without the cluster means nothing is in progress any more.
	if err := stream.Send(&lrsv3.LoadStatsRequest{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "in-flight back to 0", func() bool { return s.Aggregator().Totals()[canary].InFlight == 0 })
	if err := stream.Send(first); err != nil {
		t.Fatal(err)
	}
	eventually(t, "in-flight 4 again", func() bool { return s.Aggregator().Totals()[canary].InFlight == 4 })
	cancel()
	eventually(t, "closed stream's in-flight dropped", func() bool {
		got := s.Aggregator().Totals()[canary]
		return got.InFlight == 0 && got.Requests == 2
	})
}
