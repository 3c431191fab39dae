package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
)

// TestChaosCountsCarryAcrossLeaderKill kills the leader in the middle of a
// long step. The surviving replica holds the forwards of the killed one and
// its own clients' reports; the Rollout's status holds the counts the killed
// leader judged, per incarnation. The new leader must continue from them —
// the canary's counts never go back — without counting a request twice:
// the counts never exceed the canary answers the clients themselves saw
// (plus their failed calls), which summing the persisted counts and the
// survivor's would.
func TestChaosCountsCarryAcrossLeaderKill(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "10m"})
	traffic := []*testkit.Load{testkit.StartLoad(t, s.dial(t), 20), testkit.StartLoad(t, s.dial(t), 20)}
	served := func() int64 {
		var n int64
		for _, l := range traffic {
			answers, failures, _ := l.Snapshot()
			n += int64(answers["v2"] + failures)
		}
		return n
	}
	// notAbove fails t when the status counts more canary requests than the
	// clients saw answered; read the status first, the clients' count after.
	notAbove := func(ro *v1alpha1.Rollout, when string) {
		if c := ro.Status.Counts; c != nil {
			if n := served(); c.Canary.Requests > n {
				t.Errorf("%s: the status counts %d canary requests, the clients saw %d: counted twice (sources %+v)",
					when, c.Canary.Requests, n, c.Sources)
			}
		}
	}

	s.Update("example.com/checkout:v2")
	before := s.Wait(3*time.Minute, "300 canary requests counted", func(ro *v1alpha1.Rollout) error {
		notAbove(ro, "before the kill")
		if c := ro.Status.Counts; c == nil || c.Canary.Requests < 300 {
			return fmt.Errorf("counts %+v", ro.Status.Counts)
		}
		return nil
	})
	counted := before.Status.Counts.Canary
	t.Logf("before the kill: canary %+v from %d sources", counted, len(before.Status.Counts.Sources))

	_, _, killed := killLeader(t)
	after := s.Wait(3*time.Minute, "the new leader's counts grown by 200", func(ro *v1alpha1.Rollout) error {
		c := ro.Status.Counts
		if c == nil || ro.Status.LastAnalysisTime == nil || !ro.Status.LastAnalysisTime.After(killed) {
			return fmt.Errorf("no analysis by the new leader yet (counts %+v)", c)
		}
		if c.Canary.Requests < counted.Requests || c.Canary.Errors < counted.Errors {
			t.Errorf("canary counts went back across the failover: %+v before, %+v after", counted, c.Canary)
		}
		notAbove(ro, "after the kill")
		if c.Canary.Requests < counted.Requests+200 {
			return fmt.Errorf("canary %+v", c.Canary)
		}
		return nil
	})
	if after.Status.Phase != v1alpha1.PhaseProgressing || after.Status.CanaryRevision != before.Status.CanaryRevision {
		t.Fatalf("phase %s revision %q after the failover, want canary %q progressing",
			after.Status.Phase, after.Status.CanaryRevision, before.Status.CanaryRevision)
	}
	t.Logf("after the kill: canary %+v, clients saw %d (sources %+v)", after.Status.Counts.Canary, served(), after.Status.Counts.Sources)
}
