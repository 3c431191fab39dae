package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// TestRolloutCountsSurviveControllerRestart restarts the only controller
// process in the middle of a long step: its load-report totals and history
// are lost with it, yet the analysis goes on from the counts on the Rollout's
// status instead of starting over (which would spend the sequential tests'
// error budget again). The canary's counts, and the samples of its error-rate
// decisions, never go back, and the new process's counts are added to them.
func TestRolloutCountsSurviveControllerRestart(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "10m"})
	startLoad(t, f.Namespace, "checkout", 20) // about 10 canary requests a second at 50%

	f.Update("example.com/checkout:v2")
	before := f.Wait(3*time.Minute, "150 canary requests counted", func(ro *v1alpha1.Rollout) error {
		if c := ro.Status.Counts; c == nil || c.Canary.Requests < 150 {
			return fmt.Errorf("counts %+v", ro.Status.Counts)
		}
		return nil
	})
	counted := before.Status.Counts.Canary
	judged := errorRateSamples(before, time.Time{})
	t.Logf("before the restart: canary %+v, stable %+v, error-rate decision on %d requests, sources %d",
		counted, before.Status.Counts.Stable, judged, len(before.Status.Counts.Sources))

	sluice.Kill()
	killed := time.Now()
	startCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sluice.Start(startCtx); err != nil {
		t.Fatalf("restart controller: %v", err)
	}
	t.Logf("controller back after %s", time.Since(killed).Round(time.Millisecond))

	// Watch every status the new process writes until its own incarnation
	// has counted 100 canary requests.
	var after *v1alpha1.Rollout
	lowest := int64(-1)
	f.Wait(3*time.Minute, "the restarted controller's counts added", func(ro *v1alpha1.Rollout) error {
		c := ro.Status.Counts
		if c == nil || ro.Status.LastAnalysisTime == nil || !ro.Status.LastAnalysisTime.After(killed) {
			return fmt.Errorf("no analysis since the restart yet (counts %+v)", c)
		}
		if lowest < 0 || c.Canary.Requests < lowest {
			lowest = c.Canary.Requests
		}
		if c.Canary.Requests < counted.Requests || c.Canary.Errors < counted.Errors {
			t.Errorf("canary counts went back across the restart: %+v before, %+v after", counted, c.Canary)
		}
		// A decision without data (the new process's first second, before
		// two snapshots of its load reports exist) judges nothing: skipped.
		if s := errorRateSamples(ro, killed); s >= 0 && s < judged {
			t.Errorf("the error-rate check judged %d requests after the restart, %d before", s, judged)
		}
		if len(c.Sources) < 2 {
			return fmt.Errorf("sources %+v: want the old incarnation and the new one", c.Sources)
		}
		if c.Canary.Requests < counted.Requests+100 {
			return fmt.Errorf("canary %+v", c.Canary)
		}
		after = ro.DeepCopy()
		return nil
	})
	if after.Status.Phase != v1alpha1.PhaseProgressing || after.Status.CanaryRevision != before.Status.CanaryRevision {
		t.Fatalf("phase %s revision %q after the restart, want the same canary %q progressing",
			after.Status.Phase, after.Status.CanaryRevision, before.Status.CanaryRevision)
	}
	t.Logf("after the restart: lowest canary count written %d, now canary %+v (sources %+v)",
		lowest, after.Status.Counts.Canary, after.Status.Counts.Sources)
}

// errorRateSamples is the number of canary requests behind the newest
// error-rate decision on ro's status made after after that judged some, or
// -1 without one.
func errorRateSamples(ro *v1alpha1.Rollout, after time.Time) int64 {
	for i := len(ro.Status.Analysis) - 1; i >= 0; i-- {
		if d := ro.Status.Analysis[i]; d.Metric == analysis.MetricErrorRate && d.Samples > 0 && d.Time.After(after) {
			return d.Samples
		}
	}
	return -1
}
