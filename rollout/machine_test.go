package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }

func bp(b v1alpha1.BasisPoints) *v1alpha1.BasisPoints { return &b }

// testSpec is a resolved delivery in mode with steps 1,5,25,50% of 30 s.
func testSpec(mode v1alpha1.DeliveryMode) v1alpha1.RolloutSpec {
	d := v1alpha1.Delivery{Mode: mode, Service: "checkout"}.WithDefaults(v1alpha1.DefaultDelivery())
	switch mode {
	case v1alpha1.ModeBeta:
		d.Cohort = &v1alpha1.Cohort{Source: v1alpha1.SourceHeader, Name: "x-cohort", Match: v1alpha1.MatchExact, Value: "beta"}
	case v1alpha1.ModeAB:
		d.Split = bp(5000)
		d.Sticky = &v1alpha1.Sticky{Source: v1alpha1.SourceHeader, Name: "x-user-id"}
	}
	return v1alpha1.RolloutSpec{Delivery: d}
}

// samples are both tracks' counts over both windows.
func samples(stableReq, stableErr, canaryReq, canaryErr uint64) *analysis.Input {
	tr := analysis.Tracks{
		Stable: analysis.TrackSample{Requests: stableReq, Errors: stableErr, Present: true},
		Canary: analysis.TrackSample{Requests: canaryReq, Errors: canaryErr, Present: true},
	}
	return &analysis.Input{Recent: tr, Cumulative: tr}
}

var (
	healthy  = samples(10000, 0, 1000, 0)
	critical = samples(10000, 0, 200, 200)
	tooFew   = samples(10000, 0, 3, 0)
	deadSrc  = &analysis.Input{
		Recent: analysis.Tracks{
			Stable: analysis.TrackSample{Problem: "connection refused", SourceFailed: true},
			Canary: analysis.TrackSample{Problem: "connection refused", SourceFailed: true},
		},
		Cumulative: analysis.Tracks{
			Stable: analysis.TrackSample{Problem: "connection refused", SourceFailed: true},
			Canary: analysis.TrackSample{Problem: "connection refused", SourceFailed: true},
		},
	}
)

func pausedFor(rev string) *DeploymentView {
	return &DeploymentView{TemplateRevision: rev, PendingRevision: rev, Paused: true, Replicas: 10}
}

func readyCanary(rev string, n int32) *CanaryView {
	return &CanaryView{Revision: rev, Replicas: n, ReadyReplicas: n}
}

func acked(w v1alpha1.BasisPoints) *Confirmed {
	return &Confirmed{Weight: w, Confirmation: Confirmation{Acked: 3}}
}

// progressingAt is a canary of revision b against a at step idx, weight w,
// confirmed at started (nil for unconfirmed).
func progressingAt(idx int32, w v1alpha1.BasisPoints, started *metav1.Time) v1alpha1.RolloutStatus {
	return v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, StableRevision: "a", CanaryRevision: "b",
		CurrentStepIndex: idx, CurrentWeight: w, StepStartedAt: started}
}

type want struct {
	phase        v1alpha1.RolloutPhase
	stable       string
	canary       string
	weight       v1alpha1.BasisPoints
	step         int32
	started      *metav1.Time
	released     bool
	actions      []Action
	failed       []string
	message      string
	event        string
	nacked       int32
	analysisSeen bool
}

func kinds(as ...ActionKind) []Action {
	out := make([]Action, len(as))
	for i, k := range as {
		out[i] = Action{Kind: k}
	}
	return out
}

func check(t *testing.T, o Observed, w want) Result {
	t.Helper()
	if o.Now.IsZero() {
		o.Now = t0
	}
	r := Step(o)
	st := r.Status
	if st.Phase != w.phase {
		t.Errorf("phase = %s, want %s (message %q)", st.Phase, w.phase, st.Message)
	}
	if w.stable != "" && st.StableRevision != w.stable {
		t.Errorf("stable = %q, want %q", st.StableRevision, w.stable)
	}
	if st.CanaryRevision != w.canary {
		t.Errorf("canary = %q, want %q", st.CanaryRevision, w.canary)
	}
	if st.CurrentWeight != w.weight {
		t.Errorf("weight = %s, want %s", st.CurrentWeight, w.weight)
	}
	if st.CurrentWeightPercent != w.weight.String() {
		t.Errorf("weight percent = %q, want %q", st.CurrentWeightPercent, w.weight.String())
	}
	if st.CurrentStepIndex != w.step {
		t.Errorf("step = %d, want %d", st.CurrentStepIndex, w.step)
	}
	if diff := cmp.Diff(w.started, st.StepStartedAt); diff != "" {
		t.Errorf("stepStartedAt (-want +got):\n%s", diff)
	}
	if (st.ReleasedAt != nil) != w.released {
		t.Errorf("releasedAt = %v, want set %v", st.ReleasedAt, w.released)
	}
	if diff := cmp.Diff(w.actions, r.Actions); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	var failed []string
	for _, f := range st.FailedRevisions {
		failed = append(failed, f.Revision)
	}
	if diff := cmp.Diff(w.failed, failed); diff != "" {
		t.Errorf("failed revisions (-want +got):\n%s", diff)
	}
	if !strings.Contains(st.Message, w.message) {
		t.Errorf("message = %q, want it to contain %q", st.Message, w.message)
	}
	if w.event != "" {
		found := false
		for _, e := range r.Events {
			found = found || e.Reason == w.event
		}
		if !found {
			t.Errorf("events = %+v, want one with reason %s", r.Events, w.event)
		}
	}
	if st.Proxies.Nacked != w.nacked {
		t.Errorf("nacked = %d, want %d", st.Proxies.Nacked, w.nacked)
	}
	if (r.Outcome != nil) != w.analysisSeen {
		t.Errorf("analysis outcome = %+v, want one %v", r.Outcome, w.analysisSeen)
	}
	if o.Deployment != nil && st.Phase.Active() && r.RequeueAfter == 0 {
		t.Errorf("active phase %s without requeue", st.Phase)
	}
	again := Step(o)
	if diff := cmp.Diff(r, again); diff != "" {
		t.Errorf("Step is not deterministic (-first +second):\n%s", diff)
	}
	return r
}
