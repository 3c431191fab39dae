package lrs

import (
	"context"
	"math"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
)

// TestForgedReportsCreateNothing plays a client that makes up what it
// reports over a real LRS stream: clusters Sluice never published, revisions
// of a published cluster that do not exist, and counts meant to overflow the
// sums. None of it creates a counter or moves one; the one real locality in
// the same report still counts.
func TestForgedReportsCreateNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := NewServer(Options{Attribute: AttributeCluster, Registerer: reg, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]bool{"shop/checkout/9090/canary\x00canary/r2": true}
	s.Restrict(func(cluster, subZone string) bool { return published[cluster+"\x00"+subZone] })
	conn := serve(t, func(g *grpc.Server) { s.Register(g) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "forger"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cluster := func(name string, ls ...*endpointv3.UpstreamLocalityStats) *endpointv3.ClusterStats {
		return &endpointv3.ClusterStats{ClusterName: name, UpstreamLocalityStats: ls}
	}
	var stats []*endpointv3.ClusterStats
	for i := range 1000 { // many made-up revisions and services
		stats = append(stats,
			cluster("shop/checkout/9090/canary", locality("canary/fake"+string(rune('a'+i%26))+string(rune('a'+i/26)), 0, 1000, 0)),
			cluster("shop/svc"+string(rune('a'+i%26))+"/9090/stable", locality("stable", 0, 1000, 0)))
	}
	stats = append(stats,
		cluster("shop/checkout/9090/canary", locality("canary/r2", math.MaxUint64-5, 10, 0)), // overflow attempt
		cluster("shop/checkout/9090/canary", locality("canary/r2", 90, 10, 2)))               // the real one
	if err := stream.Send(&lrsv3.LoadStatsRequest{ClusterStats: stats}); err != nil {
		t.Fatal(err)
	}
	real := Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2"}
	eventually(t, "the real locality's report", func() bool { return s.Aggregator().Local()[real].Requests > 0 })
	if diff := cmp.Diff(map[Key]Totals{real: {Requests: 100, Errors: 10, Issued: 100, InFlight: 2}}, s.Aggregator().Local()); diff != "" {
		t.Fatalf("aggregated keys (-want +got):\n%s", diff)
	}
	if n := testutil.ToFloat64(s.metrics.rejected.WithLabelValues(RejectOverflow)); n != 1 {
		t.Fatalf("rejected implausible reports = %v, want 1", n)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_route_requests_total"); err != nil || n != 1 {
		t.Fatalf("sluice_route_requests_total series = %d (%v), want 1", n, err)
	}
}

func TestTotalsAddSaturates(t *testing.T) {
	got := Totals{Requests: math.MaxUint64 - 1, Errors: 3}.Add(Totals{Requests: 5, Errors: 4})
	if got.Requests != math.MaxUint64 || got.Errors != 7 {
		t.Fatalf("Add = %+v, want requests saturated at MaxUint64 and errors 7", got)
	}
}
