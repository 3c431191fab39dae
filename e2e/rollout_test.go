package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
)

// These tests drive whole deliveries through the `sluice controller` under
// test (webhooks, traffic controller and rollout controller together), with
// grpc-go's xDS clients sending continuous traffic that the pod runtime
// answers with each pod's image tag, and load reports feeding the analysis.

// startLoad sends rate RPCs a second to xds:///<service>.<ns> until the test
// ends or Stop is called.
func startLoad(t testing.TB, ns, service string, rate int) *testkit.Load {
	t.Helper()
	return testkit.StartLoad(t, newXDSConn(t, "xds:///"+service+"."+ns), rate)
}

// rolloutPoll and deployment are testkit's, under the names this
// package's tests and benchmarks use.
var (
	rolloutPoll = testkit.Poll
	deployment  = testkit.Deployment
)

var (
	rolloutKubeOnce   sync.Once
	rolloutKubeClient client.Client
	rolloutKubeErr    error
)

// rolloutKube is a client that knows Rollouts, shared by the tests.
func rolloutKube(t testing.TB) client.Client {
	t.Helper()
	rolloutKubeOnce.Do(func() { rolloutKubeClient, rolloutKubeErr = testkit.NewClient(env.RESTConfig()) })
	if rolloutKubeErr != nil {
		t.Fatalf("rollout client: %v", rolloutKubeErr)
	}
	return rolloutKubeClient
}

// deliveryFixture is one opted-in service in its own namespace.
type deliveryFixture struct{ *testkit.Delivery }

// newDelivery deploys image as checkout (3 replicas) opted in with the
// annotations, and waits until its Rollout is Idle with a stable revision.
func newDelivery(t testing.TB, image string, annotations map[string]string, podEnv ...corev1.EnvVar) *deliveryFixture {
	t.Helper()
	a := map[string]string{v1alpha1.AnnotationRollout: "canary"}
	maps.Copy(a, annotations)
	return &deliveryFixture{testkit.Deploy(t, env.Client(), rolloutKube(t), testkit.DeliverySpec{
		Namespace:       rolloutNamespaceName(),
		NamespaceLabels: map[string]string{"sluice.dev/team": "shop"},
		Name:            "checkout", Image: image, Replicas: 3, Annotations: a, Env: podEnv,
		StableWithin: 2 * time.Minute,
	})}
}

// rolloutNamespaceName is a new name for a namespace of a rollout test.
func rolloutNamespaceName() string {
	return fmt.Sprintf("rollout-%d-%d", rolloutNamespaces.Add(1), time.Now().UnixNano()%100000)
}

// rolloutNamespace creates a namespace of team shop for one test or benchmark and
// deletes it afterwards.
func rolloutNamespace(t testing.TB) string {
	t.Helper()
	name := rolloutNamespaceName()
	testkit.Namespace(t, env.Client(), name, map[string]string{"sluice.dev/team": "shop"})
	return name
}

var rolloutNamespaces, rolloutNodes atomic.Int64

// checkLoads stops the loads and fails t for every failed RPC of each
// (during says when they ran) and for each one that one of versions never
// answered; it logs what each saw.
func checkLoads(t testing.TB, during string, loads map[string]*testkit.Load, versions ...string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(loads)) {
		l := loads[name]
		l.Stop()
		answers, failures, msgs := l.Snapshot()
		t.Logf("%s: answers %v, failures %d", name, answers, failures)
		if failures > 0 {
			t.Errorf("%s: %d failed RPCs %s: %v", name, failures, during, msgs)
		}
		for _, v := range versions {
			if answers[v] == 0 {
				t.Errorf("%s never reached %s: answers %v", name, v, answers)
			}
		}
	}
}

func errorRate(rate string) corev1.EnvVar { return corev1.EnvVar{Name: "SIM_ERROR_RATE", Value: rate} }

func TestRolloutHealthyPromotedWithoutFailedRPCs(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "10,25,50", v1alpha1.AnnotationStepInterval: "5s"})
	loads := []*testkit.Load{startLoad(t, f.Namespace, "checkout", 50), startLoad(t, f.Namespace, "checkout", 50)}
	f.Update("example.com/checkout:v2")
	f.Wait(30*time.Second, "canary starts", testkit.PhaseIs(v1alpha1.PhaseProgressing))
	ro := f.Wait(4*time.Minute, "promoted", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	eventually(t, time.Minute, "canary deleted", f.CanaryGone)
	var d appsv1.Deployment
	if err := f.Kube.Get(context.Background(), types.NamespacedName{Namespace: f.Namespace, Name: f.Name}, &d); err != nil {
		t.Fatal(err)
	}
	if rev := d.Spec.Template.Labels[v1alpha1.LabelRevision]; ro.Status.StableRevision != rev || d.Spec.Paused {
		t.Errorf("stable revision %s, Deployment at %s paused=%v", ro.Status.StableRevision, rev, d.Spec.Paused)
	}
	var before map[string]int
	eventually(t, time.Minute, "only v2 answers", func(context.Context) error {
		// The load keeps running: compare two snapshots a poll apart.
		after, _, _ := loads[0].Snapshot()
		defer func() { before = after }()
		if before == nil || after["v1"] != before["v1"] || after["v2"] == before["v2"] {
			return fmt.Errorf("answers moved from %v to %v", before, after)
		}
		return nil
	})
	checkLoads(t, "during the rollout", map[string]*testkit.Load{"client 0": loads[0], "client 1": loads[1]}, "v2")
}

func TestRolloutFailingCanaryRolledBack(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,50", v1alpha1.AnnotationStepInterval: "30s"})
	load := startLoad(t, f.Namespace, "checkout", 100)
	f.Update("example.com/checkout:v3", errorRate("0.2"))
	ro := f.Wait(3*time.Minute, "rolled back", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	if len(ro.Status.FailedRevisions) != 1 || ro.Status.FailedRevisions[0].Reason == "" {
		t.Fatalf("failed revisions %+v, want the canary's with a reason", ro.Status.FailedRevisions)
	}
	eventually(t, time.Minute, "canary deleted", f.CanaryGone)
	load.Stop()
	firstFail, lastCanary := load.Failed()
	if _, seen, _ := load.Seen("v3"); seen.After(lastCanary) {
		lastCanary = seen
	}
	detection := lastCanary.Sub(firstFail)
	answers, failures, _ := load.Snapshot()
	t.Logf("first failure to zero canary traffic: %s (answers %v, failures %d, reason %q)",
		detection.Round(time.Millisecond), answers, failures, ro.Status.FailedRevisions[0].Reason)
	if failures == 0 {
		t.Fatalf("no RPC failed: the faulty canary never took traffic")
	}

	// The failed revision is refused until retried.
	var d appsv1.Deployment
	if err := f.Kube.Get(context.Background(), types.NamespacedName{Namespace: f.Namespace, Name: f.Name}, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Spec.Paused {
		t.Errorf("the Deployment was unpaused: the failed revision would replace the stable pods")
	}
}

// TestRolloutFixForwardJudgedOnItsOwnRequests is a team fixing forward: v2
// fails half its requests and is rolled back; v3, healthy, is applied the
// moment the rollback shows, while clients are still reporting v2's last
// requests. v3 must be judged on its own requests only (load reports are
// per revision) and promoted.
func TestRolloutFixForwardJudgedOnItsOwnRequests(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,50", v1alpha1.AnnotationStepInterval: "10s"})
	load := startLoad(t, f.Namespace, "checkout", 100)
	f.Update("example.com/checkout:v2", errorRate("0.5"))
	bad := f.Wait(3*time.Minute, "v2 rolled back", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	if len(bad.Status.FailedRevisions) == 0 {
		t.Fatalf("rolled back without a failed revision: %+v", bad.Status)
	}
	badRev := bad.Status.FailedRevisions[0].Revision
	f.Update("example.com/checkout:v3")
	started := f.Wait(time.Minute, "v3 canary starts", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CanaryRevision == badRev {
			return fmt.Errorf("phase %s, canary %s", ro.Status.Phase, ro.Status.CanaryRevision)
		}
		if ro.Status.CanaryStartedAt == nil {
			return fmt.Errorf("canary %s has no canaryStartedAt", ro.Status.CanaryRevision)
		}
		return nil
	})
	fixRev := started.Status.CanaryRevision
	ro := f.Wait(4*time.Minute, "v3 promoted", func(ro *v1alpha1.Rollout) error {
		for _, fr := range ro.Status.FailedRevisions {
			if fr.Revision == fixRev {
				t.Fatalf("the fix %s was rolled back: %s", fixRev, fr.Reason)
			}
		}
		if ro.Status.Phase != v1alpha1.PhaseSucceeded || ro.Status.StableRevision != fixRev {
			return fmt.Errorf("phase %s, stable %s", ro.Status.Phase, ro.Status.StableRevision)
		}
		return nil
	})
	load.Stop()
	answers, failures, _ := load.Snapshot()
	t.Logf("v2 %s rolled back (%s); v3 %s promoted; answers %v, failures %d (v2's injected errors)",
		badRev, bad.Status.FailedRevisions[0].Reason, fixRev, answers, failures)
	if answers["v3"] == 0 {
		t.Errorf("no request reached v3")
	}
	if len(ro.Status.FailedRevisions) != 1 || ro.Status.FailedRevisions[0].Revision != badRev {
		t.Errorf("failed revisions %+v, want only v2's %s", ro.Status.FailedRevisions, badRev)
	}
}

// TestRolloutCanaryReplacedMidStepWithoutFailedRPCs is a team applying v3
// while v2's healthy canary carries weight in the middle of a step, under
// continuous traffic: v2's canary goes to weight 0, confirmed, before it is
// re-templated for v3, whose own steps then promote it. No RPC may fail.
func TestRolloutCanaryReplacedMidStepWithoutFailedRPCs(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,50", v1alpha1.AnnotationStepInterval: "20s"})
	loads := []*testkit.Load{startLoad(t, f.Namespace, "checkout", 50), startLoad(t, f.Namespace, "checkout", 50)}
	f.Update("example.com/checkout:v2")
	mid := f.Wait(2*time.Minute, "v2's canary carrying weight", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.StepStartedAt == nil || ro.Status.CurrentWeight == 0 {
			return fmt.Errorf("phase %s, weight %s, step started %v", ro.Status.Phase, ro.Status.CurrentWeight, ro.Status.StepStartedAt)
		}
		return nil
	})
	v2 := mid.Status.CanaryRevision
	// Every client must have reached v2 before v3 replaces it (the check
	// at the end wants each to have seen both).
	eventually(t, time.Minute, "v2 answering every client", func(context.Context) error {
		for i, l := range loads {
			if answers, _, _ := l.Snapshot(); answers["v2"] == 0 {
				return fmt.Errorf("client %d: answers %v", i, answers)
			}
		}
		return nil
	})
	f.Update("example.com/checkout:v3")
	started := f.Wait(time.Minute, "v3's canary starts", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CanaryRevision == v2 {
			return fmt.Errorf("phase %s, canary %s", ro.Status.Phase, ro.Status.CanaryRevision)
		}
		return nil
	})
	v3 := started.Status.CanaryRevision
	f.Wait(4*time.Minute, "v3 promoted", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseSucceeded || ro.Status.StableRevision != v3 {
			return fmt.Errorf("phase %s, stable %s: %s", ro.Status.Phase, ro.Status.StableRevision, ro.Status.Message)
		}
		return nil
	})
	// The controller drained v2's canary before re-templating it: under a
	// rolling update of Ready-gated pods the replacement rarely fails an RPC
	// even without the drain, so the Events say which way it went.
	eventually(t, 30*time.Second, "v2's canary drained before it was replaced", func(ctx context.Context) error {
		evs, err := env.Client().EventsV1().Events(f.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var draining, superseded bool
		for _, e := range evs.Items {
			if e.Regarding.Kind != "Rollout" {
				continue
			}
			draining = draining || (e.Reason == "CanaryDraining" && strings.Contains(e.Note, "revision "+v3+" replaces canary "+v2))
			superseded = superseded || e.Reason == "CanarySuperseded"
		}
		if !draining || !superseded {
			return fmt.Errorf("%d events: CanaryDraining for %s over %s seen %v, CanarySuperseded seen %v", len(evs.Items), v3, v2, draining, superseded)
		}
		return nil
	})
	checkLoads(t, "while v3 replaced v2's canary", map[string]*testkit.Load{"client 0": loads[0], "client 1": loads[1]}, "v2", "v3")
}

func TestRolloutComparisonCatchesTwoPercentAgainstPointOne(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "2m",
		v1alpha1.AnnotationMaxErrorRate: "5%"}, errorRate("0.001"))
	startLoad(t, f.Namespace, "checkout", 100)
	f.Update("example.com/checkout:v2", errorRate("0.02"))
	ro := f.Wait(3*time.Minute, "rolled back by the comparison", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	if reason := ro.Status.FailedRevisions[0].Reason; !strings.Contains(reason, "error-rate-vs-stable") {
		t.Errorf("rolled back for %q, want the canary-versus-stable comparison", reason)
	}
}

func TestRolloutNoiseOnBothTracksPromoted(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "25,50", v1alpha1.AnnotationStepInterval: "20s",
		v1alpha1.AnnotationMaxErrorRate: "1%"}, errorRate("0.005"))
	startLoad(t, f.Namespace, "checkout", 50)
	f.Update("example.com/checkout:v2", errorRate("0.005"))
	f.Wait(30*time.Second, "canary starts", testkit.PhaseIs(v1alpha1.PhaseProgressing))
	ro := f.Wait(4*time.Minute, "promoted or rolled back", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase == v1alpha1.PhaseSucceeded || ro.Status.Phase == v1alpha1.PhaseRolledBack {
			return nil
		}
		return fmt.Errorf("phase %s", ro.Status.Phase)
	})
	if ro.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("0.5%% errors on both tracks were rolled back: %+v", ro.Status.FailedRevisions)
	}
}

func TestRolloutResumesAfterControllerKilled(t *testing.T) {
	// 100 requests a second: the first step's 20% gives the analysis its
	// 100 canary requests per 10 s window.
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40,60", v1alpha1.AnnotationStepInterval: "8s"})
	startLoad(t, f.Namespace, "checkout", 50)
	startLoad(t, f.Namespace, "checkout", 50)

	// Record every status the Rollout passes through.
	type seen struct {
		step    int32
		weight  v1alpha1.BasisPoints
		started string
		phase   v1alpha1.RolloutPhase
	}
	var mu sync.Mutex
	var history []seen
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var ro v1alpha1.Rollout
			if err := f.Kube.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: f.Name}, &ro); err == nil {
				s := seen{step: ro.Status.CurrentStepIndex, weight: ro.Status.CurrentWeight, phase: ro.Status.Phase}
				if ro.Status.StepStartedAt != nil {
					s.started = ro.Status.StepStartedAt.UTC().String()
				}
				mu.Lock()
				if n := len(history); n == 0 || history[n-1] != s {
					history = append(history, s)
				}
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { cancel(); <-done }()

	f.Update("example.com/checkout:v2")
	f.Wait(2*time.Minute, "second step confirmed", func(ro *v1alpha1.Rollout) error {
		if ro.Status.CurrentStepIndex != 1 || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("step %d, started %v", ro.Status.CurrentStepIndex, ro.Status.StepStartedAt)
		}
		return nil
	})
	sluice.Kill()
	killed := time.Now()
	startCtx, cancelStart := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelStart()
	if err := sluice.Start(startCtx); err != nil {
		t.Fatalf("restart controller: %v", err)
	}
	t.Logf("controller back after %s", time.Since(killed).Round(time.Millisecond))
	f.Wait(4*time.Minute, "promoted after the restart", testkit.PhaseIs(v1alpha1.PhaseSucceeded))

	mu.Lock()
	defer mu.Unlock()
	startedAt := map[int32]string{}
	var last seen
	for _, s := range history {
		if s.phase == v1alpha1.PhaseProgressing && s.step < last.step {
			t.Errorf("step went back from %d to %d: %+v", last.step, s.step, history)
		}
		if s.phase == v1alpha1.PhaseProgressing && s.started != "" {
			if prev, ok := startedAt[s.step]; ok && prev != s.started {
				t.Errorf("step %d started twice (%s, then %s): repeated after the restart", s.step, prev, s.started)
			}
			startedAt[s.step] = s.started
		}
		last = s
	}
	for i := int32(0); i < 3; i++ {
		if _, ok := startedAt[i]; !ok {
			t.Errorf("step %d was never confirmed: skipped (history %+v)", i, history)
		}
	}
}

func TestRolloutDeadMetricsSourceHoldsVisibly(t *testing.T) {
	// No client sends traffic, so no load report ever arrives: the default
	// no-data policy (Hold) keeps the canary at its first step and says so.
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "10,50", v1alpha1.AnnotationStepInterval: "2s"})
	f.Update("example.com/checkout:v2")
	f.Wait(2*time.Minute, "held for lack of data", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("phase %s, step not confirmed", ro.Status.Phase)
		}
		if time.Since(ro.Status.StepStartedAt.Time) < 10*time.Second {
			return errors.New("step interval not long past yet")
		}
		if !strings.Contains(ro.Status.Message, "held by analysis") || !strings.Contains(strings.ToLower(ro.Status.Message), "nodata") && !strings.Contains(ro.Status.Message, "no data") {
			return errors.New("message does not show the no-data hold")
		}
		return nil
	})
	ro := f.Wait(10*time.Second, "still at the first step", testkit.PhaseIs(v1alpha1.PhaseProgressing))
	if ro.Status.CurrentStepIndex != 0 {
		t.Fatalf("advanced to step %d without data", ro.Status.CurrentStepIndex)
	}
	inconclusive := false
	for _, d := range ro.Status.Analysis {
		inconclusive = inconclusive || d.Verdict == v1alpha1.VerdictInconclusive
	}
	if !inconclusive {
		t.Errorf("analysis decisions %+v show no inconclusive verdict", ro.Status.Analysis)
	}
}

// BenchmarkRolloutFaultToZeroCanaryTraffic measures on the real data plane the
// time from the first request a faulty canary receives to the last request it
// receives from any of two grpc-go xDS clients, for canary error rates of 5,
// 20 and 100% and canary traffic of 5, 20 and 100 requests a second (the
// canary holds a 50% step; each client sends the canary rate in total).
// Conditions: the local cluster and the controller under test on the same
// machine, load reports every second, the built-in analysis defaults.
func BenchmarkRolloutFaultToZeroCanaryTraffic(b *testing.B) {
	for _, errRate := range []string{"0.05", "0.2", "1"} {
		for _, rps := range []int{5, 20, 100} {
			b.Run(fmt.Sprintf("errors=%s/canary=%dreq/s", errRate, rps), func(b *testing.B) {
				var total time.Duration
				for i := 0; i < b.N; i++ {
					total += faultToZero(b, errRate, rps)
				}
				b.ReportMetric(total.Seconds()/float64(b.N), "s-to-zero")
			})
		}
	}
}

func faultToZero(b *testing.B, errRate string, canaryRPS int) time.Duration {
	f := newDelivery(b, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "10m"})
	loads := []*testkit.Load{startLoad(b, f.Namespace, "checkout", canaryRPS), startLoad(b, f.Namespace, "checkout", canaryRPS)}
	f.Update("example.com/checkout:bad", errorRate(errRate))
	f.Wait(5*time.Minute, "rolled back", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	rolloutPoll(b, time.Minute, "canary deleted", f.CanaryGone)
	var onset, last time.Time
	for _, l := range loads {
		l.Stop()
		first, end := l.Failed()
		if _, seen, ok := l.Seen("bad"); ok && seen.After(end) {
			end = seen
		}
		if !first.IsZero() && (onset.IsZero() || first.Before(onset)) {
			onset = first
		}
		if end.After(last) {
			last = end
		}
	}
	if onset.IsZero() {
		b.Fatalf("no request failed: the canary never took traffic")
	}
	return last.Sub(onset)
}
