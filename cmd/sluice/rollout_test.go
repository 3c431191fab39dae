package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func testRollout(phase v1alpha1.RolloutPhase) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"},
		Spec: v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Mode: v1alpha1.ModeCanary,
			Steps: []v1alpha1.BasisPoints{100, 500, 2500, 5000}}},
		Status: v1alpha1.RolloutStatus{Phase: phase, StableRevision: "aaa", CanaryRevision: "bbb",
			FailedRevisions: []v1alpha1.FailedRevision{{Revision: "old"}, {Revision: "bbb"}}},
	}
}

func TestRolloutActions(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	req := actionRequest{user: "alice", reason: "looks good", now: now}
	tests := map[string]struct {
		act     rolloutAction
		phase   v1alpha1.RolloutPhase
		rev     string
		want    string
		wantErr string
	}{
		"promote names the canary revision": {act: actionPromote, phase: v1alpha1.PhaseProgressing,
			want: `{"promote":{"revision":"bbb","requestedAt":"2026-11-25T12:00:00Z","requestedBy":"alice","reason":"looks good"}}`},
		"abort while paused": {act: actionAbort, phase: v1alpha1.PhasePaused,
			want: `{"abort":{"revision":"bbb","requestedAt":"2026-11-25T12:00:00Z","requestedBy":"alice","reason":"looks good"}}`},
		"promote without a canary": {act: actionPromote, phase: v1alpha1.PhaseSucceeded, wantErr: "is Succeeded: no canary in flight"},
		"abort without a canary":   {act: actionAbort, phase: v1alpha1.PhaseRolledBack, wantErr: "no canary in flight"},
		"pause":                    {act: actionPause, phase: v1alpha1.PhaseProgressing, want: `{"paused":true}`},
		"resume":                   {act: actionResume, phase: v1alpha1.PhasePaused, want: `{"paused":null}`},
		"retry the latest failure": {act: actionRetry, phase: v1alpha1.PhaseRolledBack, want: `{"retryRevision":"bbb"}`},
		"retry a named failure":    {act: actionRetry, phase: v1alpha1.PhaseRolledBack, rev: "old", want: `{"retryRevision":"old"}`},
		"retry an unknown revision": {act: actionRetry, phase: v1alpha1.PhaseRolledBack, rev: "zzz",
			wantErr: `revision "zzz" is not among rollout shop/checkout's failed revisions [old, bbb]`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := req
			r.revision = tc.rev
			spec, err := tc.act(testRollout(tc.phase), r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(tc.wantErr, "no canary") && !errors.Is(err, errNoCanary) {
					t.Fatalf("error %v does not wrap errNoCanary", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Fatalf("patch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrintRollouts(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 10, 0, time.UTC)
	at := metav1.NewTime(now.Add(-3 * time.Second))
	a := testRollout(v1alpha1.PhaseProgressing)
	a.Status.CurrentWeight = 500
	a.Status.CurrentStepIndex = 1
	a.Status.Message = "step 2/4 at canary weight 5%: analysing, 20s left"
	a.Status.Analysis = []v1alpha1.AnalysisDecision{
		{Metric: "error-rate", Verdict: v1alpha1.VerdictFail, Value: "0.3", Threshold: "0.01", Time: metav1.NewTime(now.Add(-4 * time.Second))},
		{Metric: "error-rate", Verdict: v1alpha1.VerdictPass, Value: "0", Threshold: "0.01", Time: at},
		{Metric: "critical-error-rate", Verdict: v1alpha1.VerdictPass, Value: "0", Threshold: "0.2", Time: at},
	}
	b := testRollout(v1alpha1.PhaseIdle)
	b.Namespace, b.Name = "pay", "ledger"
	b.Status = v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "ccc"}
	var out strings.Builder
	if err := printRollouts(&out, []v1alpha1.Rollout{*a, *b}, true, now); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAMESPACE  NAME      PHASE        WEIGHT  STEP  STABLE  CANARY  VERDICTS                                                        MESSAGE\n" +
		"pay        ledger    Idle         0%      -     ccc     -       -                                                               -\n" +
		"shop       checkout  Progressing  5%      2/4   aaa     bbb     critical-error-rate=Pass(0/0.2),error-rate=Pass(0/0.01) 3s ago  step 2/4 at canary weight 5%: analysing, 20s left\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Fatalf("table (-want +got):\n%s", diff)
	}
	out.Reset()
	if err := printRollouts(&out, nil, false, now); err != nil || out.String() != "No rollouts found.\n" {
		t.Fatalf("empty table = %q, %v", out.String(), err)
	}
}
