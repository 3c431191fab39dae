package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/local/testkit"
	"github.com/sluice-dev/sluice/router"
)

// TestChaosLoadReportsOnAnotherReplica: a client's ADS stream goes to one
// replica and its load reports to the other, as with Envoy's own
// lrs_server cluster behind a Service. The replica receiving the reports
// never sent that client anything; it must learn from the other replica
// that the client acknowledged the canary's cluster, so the client's
// errors count and roll the canary back.
func TestChaosLoadReportsOnAnotherReplica(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "2m"})
	s.Update("example.com/checkout:v2")
	ro := s.Wait(2*time.Minute, "canary at 50%", stepConfirmed(0))
	cluster := router.ClusterName(s.Namespace, "checkout", 8080, router.TrackCanary)
	canary := ro.Status.CanaryRevision
	zone := router.LocalitySubZone(router.TrackCanary, canary)
	adsAt, lrsAt := sluice.Replicas[0], sluice.Replicas[1]

	dial := func(addr string) *grpc.ClientConn { return testkit.DialXDS(t, addr, caFile, s.tokenFile(t)) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	node := &corev3.Node{Id: fmt.Sprintf("chaos-split-%d", nodes.Add(1))}

	// Subscribe to the canary's cluster on one replica and acknowledge it.
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(dial(adsAt.XDSAddr())).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ads.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResourceNames: []string{cluster}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ads.Recv()
	if err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("subscribe to %s on %s: %d resources, %v", cluster, adsAt.Name, len(resp.GetResources()), err)
	}
	if err := ads.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNames: []string{cluster},
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	// Report a third of the canary's requests failing, to the other one.
	lrs, err := lrsv3.NewLoadReportingServiceClient(dial(lrsAt.XDSAddr())).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := lrs.Send(&lrsv3.LoadStatsRequest{Node: node}); err != nil {
		t.Fatal(err)
	}
	if _, err := lrs.Recv(); err != nil {
		t.Fatalf("load reporting stream to %s: %v", lrsAt.Name, err)
	}
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			ls := &endpointv3.UpstreamLocalityStats{Locality: &corev3.Locality{SubZone: zone},
				TotalSuccessfulRequests: 20, TotalErrorRequests: 10, TotalIssuedRequests: 30}
			if lrs.Send(&lrsv3.LoadStatsRequest{ClusterStats: []*endpointv3.ClusterStats{
				{ClusterName: cluster, UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{ls}}}}) != nil {
				return
			}
		}
	}()
	start := time.Now()
	ro = s.Wait(2*time.Minute, "rolled back on errors reported to the other replica", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	if fr := ro.Status.FailedRevisions; len(fr) != 1 || fr[0].Revision != canary {
		t.Fatalf("failed revisions %+v, want %s", fr, canary)
	}
	t.Logf("ADS on %s, load reports on %s: rolled back %s after the first report: %q",
		adsAt.Name, lrsAt.Name, time.Since(start).Round(time.Millisecond), ro.Status.Message)
}
