package rollout

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// world is a model of the cluster the controller acts on: actions take effect
// at once, proxies confirm every weight, and the Deployment rolls out as soon
// as it is unpaused.
type world struct {
	dep    DeploymentView
	canary *CanaryView
	spec   v1alpha1.RolloutSpec
	status v1alpha1.RolloutStatus
	now    time.Time

	confirmed []v1alpha1.BasisPoints // weights in the order their steps started, from stored statuses
	stepTimes []time.Time            // when each of those steps started
	advanced  []time.Time            // when each stored status first showed a higher step index
}

func (w *world) observe(samples *analysis.Input) Observed {
	o := Observed{Deployment: &w.dep, Canary: w.canary, Spec: w.spec, Status: w.status, Now: w.now}
	if w.canary != nil {
		c := *w.canary
		o.Canary = &c
	}
	d := w.dep
	o.Deployment = &d
	n := NeedsOf(o)
	if n.Confirm != nil {
		o.Confirmed = acked(*n.Confirm)
	}
	if n.Analyse {
		o.Samples = samples
	}
	return o
}

// store persists a status as the API server would: times to the second.
func (w *world) store(st v1alpha1.RolloutStatus) {
	trunc := func(t *metav1.Time) *metav1.Time {
		if t == nil {
			return nil
		}
		u := metav1.NewTime(t.Truncate(time.Second))
		return &u
	}
	st.StepStartedAt = trunc(st.StepStartedAt)
	st.LastAnalysisTime = trunc(st.LastAnalysisTime)
	st.ReleasedAt = trunc(st.ReleasedAt)
	if w.status.StepStartedAt == nil && st.StepStartedAt != nil && st.Phase.Active() && st.Phase != v1alpha1.PhasePromoting {
		w.confirmed = append(w.confirmed, st.CurrentWeight)
		w.stepTimes = append(w.stepTimes, st.StepStartedAt.Time)
	}
	if st.CurrentStepIndex > w.status.CurrentStepIndex {
		w.advanced = append(w.advanced, w.now)
	}
	w.status = st
}

func (w *world) act(as []Action) {
	for _, a := range as {
		switch a.Kind {
		case EnsureCanary:
			w.canary = &CanaryView{Revision: w.dep.TemplateRevision, Replicas: a.Replicas, ReadyReplicas: a.Replicas}
		case DeleteCanary:
			w.canary = nil
		case UnpauseDeployment:
			w.dep.Paused, w.dep.PendingRevision, w.dep.RolledOut = false, "", true
		case ClearRequests:
			w.spec.Promote, w.spec.Abort, w.spec.RetryRevision = nil, nil, ""
		}
	}
}

// TestRestartNeitherRepeatsNorSkipsSteps crashes the controller at random
// points (before storing the status, or after storing it but before its
// actions) and checks that the proxies see every step's weight exactly once,
// in order, each held for its full interval, and the rollout ends promoted.
func TestRestartNeitherRepeatsNorSkipsSteps(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		spec := testSpec(v1alpha1.ModeCanary)
		spec.Delivery.StepInterval = &metav1.Duration{Duration: 3 * time.Second}
		w := &world{
			dep:    DeploymentView{TemplateRevision: "b", PendingRevision: "b", Paused: true, Replicas: 10},
			spec:   spec,
			status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "a"},
			now:    t0,
		}
		for i := 0; i < 400 && w.status.Phase != v1alpha1.PhaseSucceeded; i++ {
			w.now = w.now.Add(time.Duration(rapid.IntRange(100, 1500).Draw(t, "tick")) * time.Millisecond)
			r := Step(w.observe(healthy))
			switch rapid.IntRange(0, 9).Draw(t, "crash") {
			case 0: // crashed before storing the status
			case 1: // stored the status, crashed before acting
				w.store(r.Status)
			default:
				w.store(r.Status)
				w.act(r.Actions)
			}
		}
		if w.status.Phase != v1alpha1.PhaseSucceeded || w.status.StableRevision != "b" {
			t.Fatalf("rollout did not finish: phase %s, stable %s: %s", w.status.Phase, w.status.StableRevision, w.status.Message)
		}
		if !slices.Equal(w.confirmed, spec.Delivery.Steps) {
			t.Fatalf("proxies confirmed steps %v, want %v", w.confirmed, spec.Delivery.Steps)
		}
		for i, started := range w.stepTimes {
			if held := w.advanced[i].Sub(started); held < spec.Delivery.StepInterval.Duration {
				t.Fatalf("step %d held %s, less than its interval", i, held)
			}
		}
		if w.canary != nil {
			t.Fatalf("canary %+v left behind", w.canary)
		}
	})
}

// TestRollbackConfirmedBeforeDelete checks, across crashes, that the canary is
// deleted only after the proxies confirmed weight 0 and that the failed
// revision is recorded once.
func TestRollbackConfirmedBeforeDelete(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := &world{
			dep:    DeploymentView{TemplateRevision: "b", PendingRevision: "b", Paused: true, Replicas: 4},
			spec:   testSpec(v1alpha1.ModeCanary),
			status: progressingAt(1, 500, at(0)),
			canary: readyCanary("b", 1),
			now:    t0,
		}
		confirmedZero := false
		for i := 0; i < 50 && (w.canary != nil || w.status.Phase != v1alpha1.PhaseRolledBack); i++ {
			w.now = w.now.Add(time.Second)
			o := w.observe(critical)
			if rapid.Bool().Draw(t, "proxies slow") {
				o.Confirmed = nil
			}
			r := Step(o)
			if o.Confirmed != nil && o.Confirmed.Weight == 0 {
				confirmedZero = true
			}
			if slices.ContainsFunc(r.Actions, func(a Action) bool { return a.Kind == DeleteCanary }) && !confirmedZero {
				t.Fatalf("canary deleted before weight 0 was confirmed")
			}
			if r.Status.Phase == v1alpha1.PhaseRolledBack && r.Status.CurrentWeight != 0 {
				t.Fatalf("rolled back with weight %s", r.Status.CurrentWeight)
			}
			if rapid.IntRange(0, 4).Draw(t, "crash") > 0 {
				w.store(r.Status)
				w.act(r.Actions)
			}
		}
		if w.canary != nil || len(w.status.FailedRevisions) != 1 || w.status.FailedRevisions[0].Revision != "b" {
			t.Fatalf("after rollback: canary %+v, failed %+v", w.canary, w.status.FailedRevisions)
		}
	})
}
