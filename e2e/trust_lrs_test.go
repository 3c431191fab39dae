package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/auth"
)

// lrsReporter reports made-up load over one LRS stream to the controller
// under test, every 200 ms, as a client whose traffic it describes would.
type lrsReporter struct {
	*testkit.LoadReporter
	stop context.CancelFunc
}

// startReporter opens an LRS stream to addr with creds (and token as call
// credentials, if set) as a node of namespace ns, and reports on cluster's
// locality zone until stopped; first it acknowledges cluster over ADS on
// the same connection, as a client does.
func startReporter(t *testing.T, addr string, creds credentials.TransportCredentials, token, ns, cluster, zone string) *lrsReporter {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	t.Cleanup(func() { cancel(); conn.Close() })
	node := &corev3.Node{Id: fmt.Sprintf("lrs-probe-%d", rolloutNodes.Add(1)), Metadata: &structpb.Struct{
		Fields: map[string]*structpb.Value{auth.NodeNamespaceKey: structpb.NewStringValue(ns)}}}
	testkit.AckCluster(t, ctx, conn, node, cluster)
	return &lrsReporter{LoadReporter: testkit.StartLoadReporter(t, ctx, conn, node, cluster, zone), stop: cancel}
}

// TestTrustLoadReportsFromTheLegacyListener plays load reports against the
// controller under test, over real LRS streams through its authentication:
// a stream without credentials is refused; the stable track is reported by
// a client with a ServiceAccount token; the canary only by a client of the
// plaintext legacy listener (its namespace opted in). The healthy canary is
// never advanced on legacy reports (its promotion evidence stays empty and
// status.sources says where its sample came from), and the same legacy
// client's errors roll it back.
func TestTrustLoadReportsFromTheLegacyListener(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,50", v1alpha1.AnnotationStepInterval: "5s"})
	ctx := context.Background()
	patch := []byte(`{"metadata":{"labels":{"` + auth.LegacyNamespaceLabel + `":"` + auth.LegacyNamespaceEnabled + `"}}}`)
	if _, err := env.Client().CoreV1().Namespaces().Patch(ctx, f.Namespace, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	tlsCreds := sluiceTLS(t)

	// No credentials: refused.
	conn, err := grpc.NewClient(sluice.XDSAddr, grpc.WithTransportCredentials(tlsCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forged, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err == nil {
		// A refused stream may already be closed when the request is sent
		// (io.EOF); its status comes with the receive.
		if err := forged.Send(&lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "forger"}}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("send on the load reporting stream: %v", err)
		}
		_, err = forged.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("load reporting without credentials: %v, want Unauthenticated", err)
	}

	stable, ro := f.startCanary("example.com/checkout:v2")
	canary := ro.Status.CanaryRevision
	stableReporter := startReporter(t, sluice.XDSAddr, tlsCreds, tokenOf(t, f.Namespace, auth.DefaultAudience), f.Namespace,
		router.ClusterName(f.Namespace, f.Name, 8080, router.TrackStable), router.LocalitySubZone(router.TrackStable, stable))
	stableReporter.Set(100, 0)
	legacy := startReporter(t, sluice.LegacyAddr, insecure.NewCredentials(), "", f.Namespace,
		router.ClusterName(f.Namespace, f.Name, 8080, router.TrackCanary), router.LocalitySubZone(router.TrackCanary, canary))
	legacy.Set(100, 0)

	ro = f.Wait(2*time.Minute, "the canary's step interval elapsed on thousands of legacy-reported requests", stepDecided(3000))
	if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex != 0 {
		t.Fatalf("a canary reported only over the legacy listener left its first step: phase %s, step %d, message %q",
			ro.Status.Phase, ro.Status.CurrentStepIndex, ro.Status.Message)
	}
	if s := ro.Status.Sources; s.Canary.EvidenceRequests != 0 || s.Canary.LegacyPercent != "100%" ||
		!strings.Contains(s.Message, "100% of the canary sample came from the legacy listener") || s.Stable.LegacyRequests != 0 {
		t.Fatalf("sources %+v, want the canary's whole sample from the legacy listener and none of it evidence", s)
	}
	t.Logf("held: %q; sources: %q", ro.Status.Message, ro.Status.Sources.Message)

	legacy.Set(70, 30)
	ro = f.Wait(2*time.Minute, "rolled back on the legacy client's errors", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	if fr := ro.Status.FailedRevisions; len(fr) != 1 || fr[0].Revision != canary {
		t.Fatalf("failed revisions %+v, want %s", fr, canary)
	}
	for _, r := range []*lrsReporter{stableReporter, legacy} {
		r.stop()
		if err := r.Wait(); err != nil {
			t.Errorf("reporter ended with %v", err)
		}
	}
}

// TestTrustOneIdentityCannotCarryACanary: one authenticated client floods a
// canary with successes while another sees a fifth of its requests fail.
// All load together looks healthy, so nothing rolls back; but the flooding
// identity counts as evidence for no more than the other one, so the canary
// is held, and status.sources names the identity that dominates.
func TestTrustOneIdentityCannotCarryACanary(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,50", v1alpha1.AnnotationStepInterval: "5s"})
	stable, ro := f.startCanary("example.com/checkout:v2")
	creds := sluiceTLS(t)
	canaryCluster := router.ClusterName(f.Namespace, f.Name, 8080, router.TrackCanary)
	canaryZone := router.LocalitySubZone(router.TrackCanary, ro.Status.CanaryRevision)
	flood, err := os.ReadFile(clientToken(t, f.Namespace, "flood", auth.DefaultAudience))
	if err != nil {
		t.Fatal(err)
	}
	reporters := []*lrsReporter{
		startReporter(t, sluice.XDSAddr, creds, tokenOf(t, f.Namespace, auth.DefaultAudience), f.Namespace,
			router.ClusterName(f.Namespace, f.Name, 8080, router.TrackStable), router.LocalitySubZone(router.TrackStable, stable)),
		startReporter(t, sluice.XDSAddr, creds, tokenOf(t, f.Namespace, auth.DefaultAudience), f.Namespace, canaryCluster, canaryZone),
		startReporter(t, sluice.XDSAddr, creds, string(flood), f.Namespace, canaryCluster, canaryZone),
	}
	reporters[0].Set(500, 0)
	reporters[1].Set(8, 2)    // a fifth of this caller's requests fail
	reporters[2].Set(1000, 0) // 1,000 successes from the flooding identity

	ro = f.Wait(2*time.Minute, "the canary's step interval elapsed on thousands of requests", stepDecided(10_000))
	if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex != 0 {
		t.Fatalf("one identity's successes carried the canary: phase %s, step %d, message %q",
			ro.Status.Phase, ro.Status.CurrentStepIndex, ro.Status.Message)
	}
	s := ro.Status.Sources
	if s.Canary.Identities != 2 || s.Canary.TopIdentity != "token:"+f.Namespace+"/flood" ||
		!strings.Contains(s.Message, "token:"+f.Namespace+"/flood supplied 99") || s.Canary.EvidenceRequests >= s.Canary.Requests/10 {
		t.Fatalf("sources %+v, want the flooding identity named as dominating and bounded in the evidence", s)
	}
	t.Logf("held: %q; sources: %q", ro.Status.Message, s.Message)
	for _, r := range reporters {
		r.stop()
		if err := r.Wait(); err != nil {
			t.Errorf("reporter ended with %v", err)
		}
	}
}

// startCanary updates the Deployment to image and waits until the canary's
// first step is confirmed; it returns the stable revision and the Rollout.
func (f *deliveryFixture) startCanary(image string) (string, *v1alpha1.Rollout) {
	f.T.Helper()
	stable := f.Wait(time.Minute, "stable revision", testkit.PhaseIs(v1alpha1.PhaseIdle)).Status.StableRevision
	f.Update(image)
	return stable, f.Wait(2*time.Minute, "canary step confirmed", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("phase %s, step started %v", ro.Status.Phase, ro.Status.StepStartedAt)
		}
		return nil
	})
}

// stepDecided holds once the first step was decided with at least n
// canary requests behind it: it advanced, or its interval elapsed and the
// analysis held it.
func stepDecided(n int64) func(*v1alpha1.Rollout) error {
	return func(ro *v1alpha1.Rollout) error {
		switch s := ro.Status.Sources; {
		case ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex > 0:
			return nil
		case s == nil || s.Canary.Requests < n || s.Stable.Requests < n/10:
			return fmt.Errorf("sources %+v", s)
		case !strings.Contains(ro.Status.Message, "interval elapsed"):
			return errors.New("the step's interval has not elapsed")
		}
		return nil
	}
}

// sluiceTLS trusts the CA that signs the controller's xDS serving
// certificate.
func sluiceTLS(t *testing.T) credentials.TransportCredentials {
	t.Helper()
	caPEM, err := os.ReadFile(sluice.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return credentials.NewTLS(&tls.Config{RootCAs: pool})
}
