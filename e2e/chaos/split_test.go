package chaos

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
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
	testkit.AckCluster(t, ctx, dial(adsAt.XDSAddr()), node, cluster)

	// Report a third of the canary's requests failing, to the other one.
	testkit.StartLoadReporter(t, ctx, dial(lrsAt.XDSAddr()), node, cluster, zone).Set(20, 10)
	start := time.Now()
	ro = s.Wait(2*time.Minute, "rolled back on errors reported to the other replica", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	if fr := ro.Status.FailedRevisions; len(fr) != 1 || fr[0].Revision != canary {
		t.Fatalf("failed revisions %+v, want %s", fr, canary)
	}
	t.Logf("ADS on %s, load reports on %s: rolled back %s after the first report: %q",
		adsAt.Name, lrsAt.Name, time.Since(start).Round(time.Millisecond), ro.Status.Message)
}
