package testkit

import (
	"context"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

// ReportInterval is how often a LoadReporter reports.
const ReportInterval = 200 * time.Millisecond

// AckCluster subscribes to cluster over ADS on conn, as node, and
// acknowledges it, as a client does before it sends that cluster traffic;
// the stream stays open until ctx ends (load counts only from identities
// with a live stream that acknowledged the cluster). It fails t unless the
// server answers with exactly that cluster.
func AckCluster(t testing.TB, ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, cluster string) {
	t.Helper()
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ads.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResourceNames: []string{cluster}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ads.Recv()
	if err != nil {
		t.Fatalf("subscribe to cluster %s: %v", cluster, err)
	}
	if len(resp.GetResources()) != 1 {
		t.Fatalf("subscribed to cluster %s, got %d clusters", cluster, len(resp.GetResources()))
	}
	if err := ads.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNames: []string{cluster},
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
}

// LoadReporter reports made-up load over one LRS stream, every
// ReportInterval, as a client whose traffic it describes would.
type LoadReporter struct {
	mu            sync.Mutex
	cluster, zone string
	ok, failed    uint64 // per report
	done          chan error
}

// StartLoadReporter opens an LRS stream on conn as node, waits for the
// server's first response (failing t without one), then reports on the
// locality zone of cluster what Set last said (nothing at first) until ctx
// ends or the stream breaks.
func StartLoadReporter(t testing.TB, ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, cluster, zone string) *LoadReporter {
	t.Helper()
	stream, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&lrsv3.LoadStatsRequest{Node: node}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("load reporting stream to %s: %v", conn.Target(), err)
	}
	r := &LoadReporter{cluster: cluster, zone: zone, done: make(chan error, 1)}
	go func() {
		tick := time.NewTicker(ReportInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				r.done <- nil
				return
			case <-tick.C:
			}
			r.mu.Lock()
			ls := &endpointv3.UpstreamLocalityStats{Locality: &corev3.Locality{SubZone: r.zone},
				TotalSuccessfulRequests: r.ok, TotalErrorRequests: r.failed, TotalIssuedRequests: r.ok + r.failed}
			r.mu.Unlock()
			err := stream.Send(&lrsv3.LoadStatsRequest{ClusterStats: []*endpointv3.ClusterStats{
				{ClusterName: r.cluster, UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{ls}}}})
			if err != nil {
				r.done <- err
				return
			}
		}
	}()
	return r
}

// Set changes what every later report says.
func (r *LoadReporter) Set(ok, failed uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ok, r.failed = ok, failed
}

// Wait waits until the reporter ended and returns the stream's error if it
// broke, nil if its context ended first.
func (r *LoadReporter) Wait() error { return <-r.done }
