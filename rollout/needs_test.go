package rollout

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestNeedsOf(t *testing.T) {
	canary := testSpec(v1alpha1.ModeCanary)
	beta := testSpec(v1alpha1.ModeBeta)
	ab := testSpec(v1alpha1.ModeAB)
	w := func(b v1alpha1.BasisPoints) *v1alpha1.BasisPoints { return &b }
	rolledOut := &DeploymentView{TemplateRevision: "b", Replicas: 10, RolledOut: true}
	promoting := func(weight v1alpha1.BasisPoints) v1alpha1.RolloutStatus {
		s := progressingAt(4, weight, nil)
		s.Phase = v1alpha1.PhasePromoting
		return s
	}
	rolledBack := v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseRolledBack, CanaryRevision: "b"}
	tests := map[string]struct {
		o    Observed
		want Needs
	}{
		"idle needs nothing": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle}},
		},
		"a weight not yet set needs nothing": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1), Status: progressingAt(0, 0, nil)},
		},
		"an unconfirmed weight is confirmed and analysed": {
			o:    Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1), Status: progressingAt(0, 100, nil), Now: t0},
			want: Needs{Confirm: w(100), Analyse: true, Cumulative: RecentWindow, Recent: RecentWindow},
		},
		"a confirmed step is analysed since its canary revision started": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1), Now: t0.Add(42 * time.Second),
				Status: startedAt(progressingAt(1, 500, at(30*time.Second)), t0)},
			want: Needs{Analyse: true, Cumulative: 42 * time.Second, Since: t0, Recent: RecentWindow},
		},
		"a revision replacing a running canary starts its own window": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1), Now: t0.Add(105 * time.Second),
				Status: startedAt(activeSince(progressingAt(0, 100, nil), t0), t0.Add(100*time.Second))},
			want: Needs{Confirm: w(100), Analyse: true, Cumulative: 5 * time.Second, Since: t0.Add(100 * time.Second), Recent: 5 * time.Second},
		},
		"a revision replacing a canary asks for its weight 0, not for analysis": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 1), Now: t0.Add(5 * time.Second),
				Status: startedAt(progressingAt(1, 0, nil), t0)},
			want: Needs{Confirm: w(0)},
		},
		"a revision replacing a promoting canary asks for its weight 0": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 5), Now: t0,
				Status: func() v1alpha1.RolloutStatus {
					s := progressingAt(4, 0, nil)
					s.Phase = v1alpha1.PhasePromoting
					return s
				}()},
			want: Needs{Confirm: w(0)},
		},
		"the cumulative window is at least a second": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1), Now: t0,
				Status: startedAt(progressingAt(0, 100, at(time.Second)), t0.Add(time.Second))},
			want: Needs{Analyse: true, Cumulative: time.Second, Since: t0.Add(time.Second), Recent: time.Second},
		},
		"moving to the next step still analyses the current weight": {
			o:    Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1), Status: progressingAt(1, 100, nil), Now: t0},
			want: Needs{Analyse: true, Cumulative: RecentWindow, Recent: RecentWindow},
		},
		"without a canary nothing is confirmed or analysed": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Status: progressingAt(0, 100, nil)},
		},
		"a beta hold is analysed, not confirmed": {
			o:    Observed{Deployment: pausedFor("b"), Spec: beta, Canary: readyCanary("b", 1), Status: progressingAt(0, 0, nil), Now: t0},
			want: Needs{Analyse: true, Cumulative: RecentWindow, Recent: RecentWindow},
		},
		"a young beta hold looks only at its own traffic, not the previous canary's": {
			o: Observed{Deployment: pausedFor("b"), Spec: beta, Canary: readyCanary("b", 1), Now: t0.Add(4 * time.Second),
				Status: activeSince(progressingAt(0, 0, nil), t0)},
			want: Needs{Analyse: true, Cumulative: 3 * time.Second, Since: t0.Add(time.Second), Recent: 3 * time.Second},
		},
		"an ab split is confirmed": {
			o:    Observed{Deployment: pausedFor("b"), Spec: ab, Canary: readyCanary("b", 5), Status: progressingAt(0, 5000, nil), Now: t0},
			want: Needs{Confirm: w(5000), Analyse: true, Cumulative: RecentWindow, Recent: RecentWindow},
		},
		"promotion confirms weight 0 once rolled out": {
			o:    Observed{Deployment: rolledOut, Spec: canary, Canary: readyCanary("b", 5), Status: promoting(0)},
			want: Needs{Confirm: w(0)},
		},
		"promotion before the rolling update needs nothing": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 5), Status: promoting(0)},
		},
		"a rollback with a canary confirms weight 0": {
			o:    Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1), Status: rolledBack},
			want: Needs{Confirm: w(0)},
		},
		"a finished rollback needs nothing": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Status: rolledBack},
		},
		"a deleted Deployment needs nothing": {
			o: Observed{Spec: canary, Canary: readyCanary("b", 1), Status: progressingAt(0, 100, nil)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, NeedsOf(tc.o)); diff != "" {
				t.Fatalf("NeedsOf (-want +got):\n%s", diff)
			}
		})
	}
}

// startedAt sets the status's canaryStartedAt.
func startedAt(s v1alpha1.RolloutStatus, when time.Time) v1alpha1.RolloutStatus {
	t := metav1.NewTime(when)
	s.CanaryStartedAt = &t
	return s
}

func TestReplicasFor(t *testing.T) {
	tests := map[string]struct {
		weight v1alpha1.BasisPoints
		stable int32
		want   int32
	}{
		"at least one":          {weight: 1, stable: 3, want: 1},
		"zero weight still one": {weight: 0, stable: 10, want: 1},
		"rounded up":            {weight: 2500, stable: 10, want: 3},
		"exact":                 {weight: 5000, stable: 10, want: 5},
		"everything":            {weight: 10000, stable: 7, want: 7},
		"unset stable counts 1": {weight: 5000, stable: 0, want: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ReplicasFor(tc.weight, tc.stable); got != tc.want {
				t.Fatalf("ReplicasFor(%s, %d) = %d, want %d", tc.weight, tc.stable, got, tc.want)
			}
		})
	}
}

// activeSince marks st as having become active (Progressing condition true)
// at t.
func activeSince(st v1alpha1.RolloutStatus, t time.Time) v1alpha1.RolloutStatus {
	st.Conditions = append(st.Conditions, metav1.Condition{Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionTrue,
		Reason: "Progressing", LastTransitionTime: metav1.NewTime(t)})
	return st
}
