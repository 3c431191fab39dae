package interop

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
)

// These tests drive each client generation through whole deliveries of the
// real `sluice controller` on a local cluster: webhooks, traffic and rollout
// controllers, the pod runtime's pods answering with their image tag, and
// the clients' own load reports feeding the analysis.

// stickyLimit is how status.proxies.limits names a sticky split by the
// x-user header that a client without ring hash cannot follow.
const stickyLimit = `sticky split by header "x-user" (no ring hash)`

// deliveryAnnotations opt checkout in to a canary with a beta cohort (by
// header) and a sticky split (by header), steps 20% then 50%.
func deliveryAnnotations(interval string) map[string]string {
	return map[string]string{
		v1alpha1.AnnotationRollout:      "canary",
		v1alpha1.AnnotationSteps:        "20,50",
		v1alpha1.AnnotationStepInterval: interval,
		v1alpha1.AnnotationCohort:       "header:x-cohort=beta",
		v1alpha1.AnnotationSticky:       "header:x-user",
	}
}

// badVersion is the pod environment of a version failing 30% of its calls.
var badVersion = corev1.EnvVar{Name: "SIM_ERROR_RATE", Value: "0.3"}

// TestControllerRolloutPerClient drives every client generation, each
// alone in a namespace of its own on the legacy listener, through a
// delivery of the controller under traffic: the 20% step's split inside
// the binomial interval (at confidence: 99.999% per check), every beta-cohort request on the new
// version, sticky users on one version (or, for clients without ring hash,
// on stable with the limit named on the Rollout); the canary held, since
// legacy load never promotes; a bad version replacing the held canary under
// traffic, rolled back on the client's own load reports; the team going back
// to v1. Any failed RPC other than the bad version's
// injected faults fails the test.
func TestControllerRolloutPerClient(t *testing.T) {
	e := controller(t)
	t.Parallel()
	concurrently(t, generations(t), func(t *testing.T, i int, g generation) { legacyDelivery(t, e, g) })
}

// concurrently runs f as a subtest per generation, all at once. The
// subtests do not call t.Parallel, so `go test -parallel` (GOMAXPROCS,
// 2 here) does not queue them: the clients mostly wait on the controller
// and the cluster, not on the CPU.
func concurrently(t *testing.T, gens []generation, f func(t *testing.T, i int, g generation)) {
	t.Helper()
	var wg sync.WaitGroup
	for i, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(g.name, func(t *testing.T) {
				recordClient(t, g.client)
				f(t, i, g)
			})
		}()
	}
	wg.Wait()
}

func legacyDelivery(t *testing.T, e *controllerEnv, g generation) {
	const interval = 2 * time.Second
	s := deployService(t, e, "interop-"+g.name, deliveryAnnotations(interval.String()))
	c := s.legacyClient(g)

	s.Update("example.com/checkout:v2")
	s.mark("v2 applied")
	ro := s.Wait(2*time.Minute, "the first step confirmed by the client", stepConfirmed(0))
	v2 := ro.Status.CanaryRevision
	measureStep(t, g, c, float64(ro.Status.CurrentWeight)/float64(v1alpha1.TotalBasisPoints), "v2", nil)
	limited := 1 // this client, unless it follows sticky splits
	if g.ringHash {
		limited = 0
	}
	checkStickyLimit(t, s, limited)

	// Legacy load never promotes: well past the step's interval, and with
	// the client's hundreds of canary requests analysed, the step holds.
	ro = s.Wait(time.Minute, "the step analysed for three intervals", func(ro *v1alpha1.Rollout) error {
		if ro.Status.StepStartedAt == nil || time.Since(ro.Status.StepStartedAt.Time) < 3*interval {
			return errors.New("the step's interval has not passed three times yet")
		}
		if ro.Status.Sources == nil || ro.Status.Sources.Canary.Requests < 100 {
			return fmt.Errorf("sources %s: fewer than 100 canary requests analysed", jsonOf(ro.Status.Sources))
		}
		return nil
	})
	src := ro.Status.Sources
	t.Logf("held on legacy load: %q; sources %q", ro.Status.Message, src.Message)
	if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex != 0 {
		t.Errorf("a canary seen only by a legacy client left its first step: phase %s, step %d", ro.Status.Phase, ro.Status.CurrentStepIndex)
	}
	if src.Canary.EvidenceRequests != 0 || src.Canary.LegacyPercent != "100%" {
		t.Errorf("sources %s: want the whole canary sample from the legacy listener and none of it evidence", jsonOf(src))
	}

	// A bad version replaces the held canary under traffic (v2's canary
	// drained to a weight 0 the client confirmed before it is re-templated),
	// then the client's own load reports roll it back.
	bg := startBackground(c, 50)
	ro = s.badVersionRolledBack(func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CanaryRevision == v2 {
			return fmt.Errorf("canary revision %q", ro.Status.CanaryRevision)
		}
		return nil
	})
	sum := bg.finish(t)
	injected := checkFailures(t, c.Name(), sum)
	t.Logf("%s while the bad version ran: versions %v, %d injected faults; rolled back: %q",
		c.Name(), sum.Versions, injected, ro.Status.FailedRevisions[len(ro.Status.FailedRevisions)-1].Reason)
	if injected == 0 || sum.Versions["v3"] == 0 {
		t.Errorf("%s never reached the bad version (versions %v, %d injected faults)", c.Name(), sum.Versions, injected)
	}
	if r := rpcs(t, c, 300, nil); r.Versions["v1"] != 300 {
		t.Errorf("%s after the rollback: versions %v, want all 300 on v1", c.Name(), r.Versions)
	}

	// The team goes back to v1, the stable revision: the Deployment resumes
	// and nothing moves.
	s.Update("example.com/checkout:v1")
	s.mark("back to v1")
	s.Wait(time.Minute, "back on v1", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase.Active() {
			return fmt.Errorf("phase %s", ro.Status.Phase)
		}
		return nil
	})
	if r := rpcs(t, c, 300, nil); r.Versions["v1"] != 300 {
		t.Errorf("%s after going back to v1: versions %v, want all 300 on v1", c.Name(), r.Versions)
	}
}

// TestControllerMixedFleet is a real mixed fleet on one controller: the
// clients that cannot authenticate on the legacy listener, next to grpc-go
// authenticated with TLS and a ServiceAccount token, all calling checkout
// through one delivery. At each step (paused there to measure) every client
// splits inside the binomial interval, sends its cohort to the new version and
// keeps its sticky users (grpc-go: on one version, never back to stable as
// the share grows; the others: on stable, and the Rollout counts them).
// Promotion evidence comes from the authenticated client only; the bad
// version after it is rolled back on everyone's load.
func TestControllerMixedFleet(t *testing.T) {
	e := controller(t)
	t.Parallel()
	gens := generations(t)
	s := deployService(t, e, "interop-mixed", deliveryAnnotations("4s"))
	clients := make([]client, len(gens))
	noRing := 0
	for i, g := range gens {
		if g.ringHash {
			clients[i] = s.authClient("web")
			continue
		}
		clients[i] = s.legacyClient(g)
		noRing++
	}
	// Steady traffic from another authenticated grpc-go client: the
	// evidence that moves the steps.
	steady := startBackground(s.authClient("web"), 20)

	s.Update("example.com/checkout:v2")
	s.mark("v2 applied")
	var sticky [][]string
	for step, weight := range []v1alpha1.BasisPoints{2000, 5000} {
		ro := s.pauseAtStep(int32(step), weight)
		if step == 1 {
			evidence(t, ro)
		}
		t.Run(fmt.Sprintf("step-%d", step+1), func(t *testing.T) {
			p := float64(ro.Status.CurrentWeight) / float64(v1alpha1.TotalBasisPoints)
			before := sticky
			sticky = make([][]string, len(gens))
			concurrently(t, gens, func(t *testing.T, i int, g generation) {
				var prev []string
				if before != nil {
					prev = before[i]
				}
				sticky[i] = measureStep(t, g, clients[i], p, "v2", prev)
			})
		})
		checkStickyLimit(t, s, noRing)
		s.setPaused(false)
		s.mark(fmt.Sprintf("resumed at step %d", step+1))
	}
	ro := s.Wait(3*time.Minute, "promoted", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	s.mark("promoted")
	s.canaryGone()
	s.mark("v2's canary deleted")
	t.Logf("promoted: sources %q", ro.Status.Sources.Message)
	// The old clients were idle through the promotion, and an idle C-core
	// client reads its xDS stream only when it makes calls: its first calls
	// may still reach the old pods, which drain for their grace period. It
	// must come to v2 alone without a failed call (rpcs fails on any).
	for i, c := range clients {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := rpcs(t, c, 200, nil)
			if r.Versions["v2"] == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s after the promotion: versions %v, want all 200 on v2", gens[i].name, r.Versions)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A bad version under everyone's traffic is rolled back.
	bgs := make([]*background, len(clients))
	for i, c := range clients {
		bgs[i] = startBackground(c, 50)
	}
	ro = s.badVersionRolledBack(func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CanaryRevision == ro.Status.StableRevision {
			return errors.New("no canary yet")
		}
		return nil
	})
	if src := ro.Status.Sources; src != nil {
		t.Logf("rolled back on: %s", jsonOf(src.Canary))
	}
	for i, b := range bgs {
		sum := b.finish(t)
		injected := checkFailures(t, gens[i].name, sum)
		t.Logf("%s while the bad version ran: versions %v, %d injected faults", clients[i].Name(), sum.Versions, injected)
	}
	for i, c := range clients {
		if r := rpcs(t, c, 200, nil); r.Versions["v2"] != 200 {
			t.Errorf("%s after the rollback: versions %v, want all 200 on v2", gens[i].name, r.Versions)
		}
	}
	sum := steady.finish(t)
	checkFailures(t, "steady grpc-go", sum)
	t.Logf("steady authenticated grpc-go over the whole run: versions %v, failures %v", sum.Versions, sum.Failures)
}

// pauseAtStep pauses the Rollout as soon as step index step has set its
// weight, and waits until the proxies confirmed it.
func (s *delivery) pauseAtStep(step int32, weight v1alpha1.BasisPoints) *v1alpha1.Rollout {
	s.t.Helper()
	s.Wait(2*time.Minute, fmt.Sprintf("step %d set", step+1), func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex < step || ro.Status.CurrentWeight < weight {
			return fmt.Errorf("step %d at weight %d", ro.Status.CurrentStepIndex, ro.Status.CurrentWeight)
		}
		return nil
	})
	s.setPaused(true)
	ro := s.Wait(time.Minute, fmt.Sprintf("paused at step %d, confirmed", step+1), func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhasePaused || ro.Status.StepStartedAt == nil {
			return errors.New("not paused at a confirmed weight yet")
		}
		return nil
	})
	if ro.Status.CurrentStepIndex != step || ro.Status.CurrentWeight != weight {
		// The step's interval (seconds) passed between seeing the weight
		// set and the pause: the measurement would not be of this step.
		s.t.Fatalf("paused at step %d (weight %d), want step %d (%d): the step interval is too short for this machine",
			ro.Status.CurrentStepIndex+1, ro.Status.CurrentWeight, step+1, weight)
	}
	return ro
}

// badVersionRolledBack applies a bad version (v3, failing a share of its
// RPCs), waits for its canary (isCanary holds once the Rollout runs it),
// for its rollback (checked by rolledBack) and for the canary's deletion,
// and returns the rolled-back Rollout.
func (s *delivery) badVersionRolledBack(isCanary func(*v1alpha1.Rollout) error) *v1alpha1.Rollout {
	s.t.Helper()
	s.Update("example.com/checkout:v3", badVersion)
	s.mark("v3 (bad) applied")
	v3 := s.Wait(time.Minute, "the bad version's canary", isCanary).Status.CanaryRevision
	ro := s.Wait(3*time.Minute, "the bad version rolled back", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	s.mark("v3 rolled back")
	rolledBack(s.t, ro, v3)
	s.canaryGone()
	s.mark("v3's canary deleted")
	return ro
}

func stepConfirmed(step int32) func(*v1alpha1.Rollout) error {
	return func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex != step || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("step %d, confirmed %v", ro.Status.CurrentStepIndex, ro.Status.StepStartedAt != nil)
		}
		return nil
	}
}

// rolledBack checks that revision rev is the one recorded as failed.
func rolledBack(t *testing.T, ro *v1alpha1.Rollout, rev string) {
	t.Helper()
	fr := ro.Status.FailedRevisions
	if len(fr) == 0 || fr[len(fr)-1].Revision != rev || fr[len(fr)-1].Reason == "" {
		t.Fatalf("failed revisions %s, want %s last with a reason", jsonOf(fr), rev)
	}
}

// evidence checks that the step advanced on authenticated load only: one
// identity of the namespace, and the legacy share not counted.
func evidence(t *testing.T, ro *v1alpha1.Rollout) {
	t.Helper()
	src := ro.Status.Sources
	if src == nil {
		t.Fatal("no status.sources after a step advanced")
	}
	t.Logf("step advanced on: canary %s; %q", jsonOf(src.Canary), src.Message)
	if src.Canary.EvidenceRequests == 0 || src.Canary.Identities != 1 || !strings.Contains(src.Canary.TopIdentity, ro.Namespace+"/web") {
		t.Errorf("canary sources %s: want the evidence from the one authenticated identity of %s", jsonOf(src.Canary), ro.Namespace)
	}
	if src.Canary.EvidenceRequests > src.Canary.Requests-src.Canary.LegacyRequests {
		t.Errorf("canary sources %s: more evidence than authenticated requests", jsonOf(src.Canary))
	}
}

// checkStickyLimit waits until status.proxies.limits counts want proxies
// that cannot follow the sticky split (none: no such line).
func checkStickyLimit(t *testing.T, s *delivery, want int) {
	t.Helper()
	ro := s.Wait(30*time.Second, "status.proxies.limits counts the clients without ring hash", func(ro *v1alpha1.Rollout) error {
		if got := limitCount(ro, stickyLimit); got != want {
			return fmt.Errorf("limits %q count %d proxies, want %d", ro.Status.Proxies.Limits, got, want)
		}
		return nil
	})
	t.Logf("status.proxies.limits: %q", ro.Status.Proxies.Limits)
}

// measureStep checks one client at a confirmed canary weight p: the split
// of 2,000 RPCs without a user key inside the binomial interval at confidence (the
// canary's answers all from version), 200 cohort RPCs all on the canary,
// and 200 sticky users, each asked twice. A client with ring hash keeps
// every user on one version, the share inside the interval, and no user
// that was on the canary before (prev) back on stable; one without gets
// stable for every sticky user. It returns the sticky assignment.
func measureStep(t *testing.T, g generation, c client, p float64, version string, prev []string) []string {
	t.Helper()
	const n, cohort, users = 2000, 200, 200
	r := rpcs(t, c, n, nil)
	lo, hi := binomialInterval(n, p, confidence)
	got := onCanary(r)
	t.Logf("%s: %d of %d RPCs on the canary at %.0f%% (%.1f%% interval [%d, %d]); versions %v", c.Name(), got, n, 100*p, 100*confidence, lo, hi, r.Versions)
	if got < lo || got > hi {
		t.Errorf("%s: %d of %d RPCs on the canary, want within [%d, %d]", c.Name(), got, n, lo, hi)
	}
	if r.Versions[version] != got {
		t.Errorf("%s: %d canary answers but %d from %s (versions %v)", c.Name(), got, r.Versions[version], version, r.Versions)
	}
	if r := rpcs(t, c, cohort, map[string]string{"x-cohort": "beta"}); onCanary(r) != cohort {
		t.Errorf("%s: beta cohort answered by %v, want all %d on the canary", c.Name(), r.Tracks, cohort)
	}

	assign := func() []string {
		out := make([]string, users)
		for u := range users {
			r := rpcs(t, c, 1, map[string]string{"x-user": fmt.Sprint("user-", u)})
			out[u] = "stable"
			if onCanary(r) == 1 {
				out[u] = "canary"
			}
		}
		return out
	}
	count := func(a []string) int {
		k := 0
		for _, v := range a {
			if v == "canary" {
				k++
			}
		}
		return k
	}
	if !g.ringHash {
		a := assign()
		if k := count(a); k != 0 {
			t.Errorf("%s (no ring hash): %d of %d sticky users on the canary, want all on stable", c.Name(), k, users)
		}
		return a
	}
	// The new locality weights reach the ring a moment after the ACK: wait
	// for two equal assignments in a row, with more users on the canary
	// than at the step before.
	var a []string
	deadline := time.Now().Add(time.Minute)
	for {
		a = assign()
		again := assign()
		if maps.Equal(mapOf(a), mapOf(again)) && (prev == nil || count(a) > count(prev)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the sticky assignment did not settle (%d of %d users on the canary)", c.Name(), count(a), users)
		}
	}
	lo, hi = binomialInterval(users, p, confidence)
	t.Logf("%s: %d of %d sticky users on the canary (interval [%d, %d])", c.Name(), count(a), users, lo, hi)
	if k := count(a); k < lo || k > hi {
		t.Errorf("%s: %d of %d sticky users on the canary, want within [%d, %d]", c.Name(), k, users, lo, hi)
	}
	var back []int
	for u := range prev {
		if prev[u] == "canary" && a[u] != "canary" {
			back = append(back, u)
		}
	}
	if len(back) > 0 {
		t.Errorf("%s: raising the share moved sticky users %v back to stable", c.Name(), back)
	}
	return a
}

func mapOf(a []string) map[int]string {
	m := make(map[int]string, len(a))
	for i, v := range a {
		m[i] = v
	}
	return m
}
