package notify

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestTransitions(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	idle := v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "a"}
	starting := v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, StableRevision: "a", CanaryRevision: "b", CurrentWeight: 2000}
	step1 := starting
	step1.StepStartedAt = &at
	step2 := step1
	step2.CurrentStepIndex, step2.CurrentWeight = 1, 5000
	heldSt := step2
	heldSt.Message = "step 2/2 at canary weight 50%: interval elapsed, held by analysis: error-rate 0.8% (8/1000), at most 1.2% with 95% confidence; limit 1%"
	heldLater := heldSt
	heldLater.Message = "step 2/2 at canary weight 50%: interval elapsed, held by analysis: error-rate 0.9% (9/1100), at most 1.3% with 95% confidence; limit 1%"
	paused := step2
	paused.Phase, paused.Message = v1alpha1.PhasePaused, "paused at canary weight 50%"
	rolled := v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseRolledBack, StableRevision: "a", CanaryRevision: "b",
		Message:         "rolled back canary b at 50%: error-rate failed",
		FailedRevisions: []v1alpha1.FailedRevision{{Revision: "b", Reason: "error-rate failed"}}}
	promoted := v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseSucceeded, StableRevision: "b", Message: "revision b is stable"}
	promoting := step2
	promoting.Phase = v1alpha1.PhasePromoting

	cases := map[string]struct {
		old, cur v1alpha1.RolloutStatus
		want     []Kind
	}{
		"started":                      {idle, starting, []Kind{Started}},
		"started and acked at once":    {idle, step1, []Kind{Started, StepReached}},
		"first step acked":             {starting, step1, []Kind{StepReached}},
		"next step":                    {step1, step2, []Kind{StepReached}},
		"nothing new":                  {step2, step2, nil},
		"analysis holds":               {step2, heldSt, []Kind{Held}},
		"inconclusive within the step": {step1, withMessage(step1, "step 1/2 at canary weight 20%: analysing, 20s left (analysis holds: 3 of the 100 requests needed)"), nil},
		"hold's figures change":        {heldSt, heldLater, nil},
		"paused":                       {step2, paused, []Kind{Held}},
		"rolled back":                  {heldSt, rolled, []Kind{RolledBack}},
		"rolled back stays":            {rolled, rolled, nil},
		"promoting is not yet news":    {step2, promoting, nil},
		"promoted":                     {promoting, promoted, []Kind{Promoted}},
		"new canary after a rollback":  {rolled, v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, StableRevision: "a", CanaryRevision: "c"}, []Kind{Started}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"}, Status: c.cur,
				Spec: v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Steps: []v1alpha1.BasisPoints{2000, 5000}}}}
			var got []Kind
			for _, m := range Transitions(ro, c.old, at.Time) {
				got = append(got, m.Kind)
				if m.Kind == RolledBack && (m.Reason != "error-rate failed" || m.Revision != "b") {
					t.Errorf("rollback message %+v, want revision b and its reason", m)
				}
				if m.Kind == Held && m.Reason == "" {
					t.Errorf("held without a reason: %+v", m)
				}
				if m.Kind == StepReached && (m.Step != c.cur.CurrentStepIndex+1 || m.Steps != 2) {
					t.Errorf("step message %+v", m)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func withMessage(st v1alpha1.RolloutStatus, msg string) v1alpha1.RolloutStatus {
	st.Message = msg
	return st
}
