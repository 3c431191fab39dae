package rollout

import (
	"testing"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestStepCanary(t *testing.T) {
	canary := testSpec(v1alpha1.ModeCanary)
	promoteB := canary
	promoteB.Promote = &v1alpha1.RolloutAction{Revision: "b", RequestedBy: "alice", RequestedAt: *at(0)}
	promoteOld := canary
	promoteOld.Promote = &v1alpha1.RolloutAction{Revision: "z"}
	abortB := canary
	abortB.Abort = &v1alpha1.RolloutAction{Revision: "b", RequestedBy: "bob", Reason: "bad colours"}
	paused := canary
	paused.Paused = true
	retryB := canary
	retryB.RetryRevision = "b"
	off := canary
	off.Delivery.Mode = v1alpha1.ModeOff
	failedB := []v1alpha1.FailedRevision{{Revision: "b", Reason: "error-rate too high", Time: *at(0)}}
	rolledBack := v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseRolledBack, StableRevision: "a", CanaryRevision: "b",
		FailedRevisions: failedB}
	promoting := func(w v1alpha1.BasisPoints, started time.Duration) v1alpha1.RolloutStatus {
		s := progressingAt(4, w, nil)
		s.Phase = v1alpha1.PhasePromoting
		if started >= 0 {
			s.StepStartedAt = at(started)
		}
		return s
	}
	rolledOut := &DeploymentView{TemplateRevision: "b", Replicas: 10, RolledOut: true}

	tests := map[string]struct {
		o    Observed
		want want
	}{
		"first deployment goes straight to stable": {
			o:    Observed{Deployment: &DeploymentView{TemplateRevision: "a", Replicas: 3}, Spec: canary},
			want: want{phase: v1alpha1.PhaseIdle, stable: "a", message: "revision a is stable"},
		},
		"pending revision starts a canary sized for the first step": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary,
				Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "a"}},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b",
				actions: []Action{{Kind: ClearRequests}, {Kind: EnsureCanary, Replicas: 1}},
				message: "started canary b", event: "CanaryStarted"},
		},
		"pending stable revision resumes the Deployment": {
			o: Observed{Deployment: pausedFor("a"), Spec: canary,
				Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseSucceeded, StableRevision: "a"}},
			want: want{phase: v1alpha1.PhaseSucceeded, actions: kinds(UnpauseDeployment), message: "is the stable revision"},
		},
		"weight waits for a ready canary": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: &CanaryView{Revision: "b", Replicas: 1},
				Status: progressingAt(0, 0, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", actions: []Action{{Kind: EnsureCanary, Replicas: 1}},
				message: "waiting for the canary to have 1 ready replicas (has 0)"},
		},
		"a canary of another revision is not ready": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("x", 1),
				Status: progressingAt(0, 0, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", actions: []Action{{Kind: EnsureCanary, Replicas: 1}},
				message: "has 0"},
		},
		"ready canary gets the step's weight, unconfirmed": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 0, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "waiting for proxies", event: "WeightSet"},
		},
		"unconfirmed weight holds without an answer": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "waiting for proxies to acknowledge weight 1%"},
		},
		"a confirmation of another weight does not count": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, nil), Confirmed: acked(500), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "waiting for proxies"},
		},
		"a NACK holds the step and says why": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, nil), Now: t0,
				Confirmed: &Confirmed{Weight: 100, Confirmation: Confirmation{Acked: 2, Nacked: 1,
					NackMessages: []string{"route: weights sum to 0"}}}},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, nacked: 1,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}},
				message: "1 proxies rejected the routes for weight 1%: route: weights sum to 0", event: "ConfigRejected"},
		},
		"confirmation starts the step": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, nil), Confirmed: acked(100), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, started: at(0),
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "analysing, 30s left", event: "WeightConfirmed"},
		},
		"step holds for its interval while analysis passes": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, at(0)), Samples: healthy, Now: t0.Add(29 * time.Second)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, started: at(0), analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "1s left"},
		},
		"elapsed step with passing analysis advances and sizes the canary": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(1, 500, at(0)), Samples: healthy, Now: t0.Add(30 * time.Second)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 500, step: 2, analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 3}}, message: "step 3/4: preparing the canary for 25%",
				event: "StepPassed"},
		},
		"elapsed step without enough samples holds": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, at(0)), Samples: tooFew, Now: t0.Add(time.Minute)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, started: at(0), analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "interval elapsed, held by analysis"},
		},
		"dead metrics source holds under the no-data policy and says so": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, at(0)), Samples: deadSrc, Now: t0.Add(time.Minute)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, started: at(0), analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "connection refused", event: "AnalysisHold"},
		},
		"last step passed promotes": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 5),
				Status: progressingAt(3, 5000, at(0)), Samples: healthy, Now: t0.Add(30 * time.Second)},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", weight: 5000, step: 4, analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 5}, {Kind: UnpauseDeployment}},
				message: "all 4 steps passed", event: "Promoting"},
		},
		"critical errors roll back at once and record the revision": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(1, 500, at(0)), Samples: critical, Now: t0.Add(2 * time.Second)},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", weight: 0, step: 1, analysisSeen: true,
				failed: []string{"b"}, message: "rolled back canary b at 5%", event: "RolledBack"},
		},
		"critical errors roll back even before the weight is confirmed": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: progressingAt(1, 500, nil), Samples: critical, Now: t0},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", step: 1, analysisSeen: true, failed: []string{"b"},
				message: "critical-error-rate"},
		},
		"abort rolls back and names who asked": {
			o: Observed{Deployment: pausedFor("b"), Spec: abortB, Canary: readyCanary("b", 1),
				Status: progressingAt(2, 2500, at(0)), Now: t0},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", step: 2, failed: []string{"b"},
				message: "aborted by bob: bad colours"},
		},
		"promote skips the remaining steps": {
			o: Observed{Deployment: pausedFor("b"), Spec: promoteB, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, at(0)), Now: t0},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", weight: 100,
				actions: kinds(UnpauseDeployment), message: "promoted by alice"},
		},
		"a promote naming another revision is ignored": {
			o: Observed{Deployment: pausedFor("b"), Spec: promoteOld, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 100, at(0)), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, started: at(0),
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "analysing"},
		},
		"pause holds the weight even with a ready canary": {
			o: Observed{Deployment: pausedFor("b"), Spec: paused, Canary: readyCanary("b", 1),
				Status: progressingAt(1, 100, nil), Now: t0},
			want: want{phase: v1alpha1.PhasePaused, canary: "b", weight: 100, step: 1,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "paused at canary weight 1%", event: "Paused"},
		},
		"resume restarts the step's interval": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: func() v1alpha1.RolloutStatus {
					s := progressingAt(0, 100, at(0))
					s.Phase = v1alpha1.PhasePaused
					return s
				}(), Now: t0.Add(time.Hour)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, started: at(time.Hour),
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "30s left", event: "Resumed"},
		},
		"a newer revision first drains a canary carrying weight, without touching it": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 3),
				Status: progressingAt(2, 2500, at(0)), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", step: 2,
				message: "revision c replaces canary b: canary weight set to 0", event: "CanaryDraining"},
		},
		"a replaced canary stays until weight 0 is confirmed": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 3),
				Status: progressingAt(2, 0, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", step: 2,
				message: "revision c replaces canary b: waiting for proxies to acknowledge weight 0"},
		},
		"a replaced canary stays while a proxy may still send it traffic": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 3),
				Status: progressingAt(2, 0, nil), Now: t0,
				Confirmed: &Confirmed{Weight: 0, Confirmation: Confirmation{Acked: 3, Holding: []string{"p2 on r2 (disconnected at T; waited for until U)"}}}},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", step: 2, message: "p2 on r2 (disconnected"},
		},
		"a newer revision replaces the canary once weight 0 is confirmed": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 3),
				Status: progressingAt(2, 0, nil), Confirmed: acked(0), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "c",
				actions: []Action{{Kind: ClearRequests}, {Kind: EnsureCanary, Replicas: 1}}, event: "CanarySuperseded"},
		},
		"a paused canary is drained before a newer revision replaces it": {
			o: Observed{Deployment: pausedFor("c"), Spec: paused, Canary: readyCanary("b", 3),
				Status: func() v1alpha1.RolloutStatus {
					s := progressingAt(2, 2500, at(0))
					s.Phase = v1alpha1.PhasePaused
					return s
				}(), Now: t0},
			want: want{phase: v1alpha1.PhasePaused, canary: "b", step: 2, message: "canary weight set to 0", event: "CanaryDraining"},
		},
		"a newer revision starts at once when no canary Deployment exists": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary,
				Status: progressingAt(2, 2500, at(0)), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "c",
				actions: []Action{{Kind: ClearRequests}, {Kind: EnsureCanary, Replicas: 1}}, event: "CanarySuperseded"},
		},
		"going back to the stable revision abandons the canary without recording it": {
			o: Observed{Deployment: pausedFor("a"), Spec: canary, Canary: readyCanary("b", 3),
				Status: progressingAt(2, 2500, at(0)), Now: t0},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", step: 2, message: "abandoned", event: "CanaryAbandoned"},
		},
		"opting out mid-rollout abandons the canary": {
			o: Observed{Deployment: pausedFor("b"), Spec: off, Canary: readyCanary("b", 3),
				Status: progressingAt(2, 2500, at(0)), Now: t0},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", step: 2, message: "left progressive delivery"},
		},
		"opted out and paused resumes natively": {
			o:    Observed{Deployment: pausedFor("b"), Spec: off, Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "a"}},
			want: want{phase: v1alpha1.PhaseIdle, actions: kinds(UnpauseDeployment), message: "rolls out natively"},
		},
		"rollback waits for proxies to confirm weight 0": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: rolledBack, Now: t0},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, message: "waiting for proxies"},
		},
		"a NACK during rollback by a proxy still routing to the canary keeps it": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: rolledBack, Now: t0,
				Confirmed: &Confirmed{Weight: 0, Confirmation: Confirmation{Nacked: 1, NackMessages: []string{"bad"},
					Holding: []string{"p1 on r1 (rejected the routes at T; waited for until U)"}}}},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, message: "p1 on r1 (rejected"},
		},
		"a NACK during rollback by a proxy whose routes never reached the canary deletes it": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: rolledBack, Now: t0,
				Confirmed: &Confirmed{Weight: 0, Confirmation: Confirmation{Nacked: 1, NackMessages: []string{"bad"}}}},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, nacked: 1,
				actions: kinds(DeleteCanary), event: "CanaryUnrouted"},
		},
		"a NACK past the deletion wait deletes the canary with a warning": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: rolledBack, Now: t0,
				Confirmed: &Confirmed{Weight: 0, Confirmation: Confirmation{Nacked: 1, NackMessages: []string{"bad"},
					Overdue: []string{"p1 on r1"}}}},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, nacked: 1,
				actions: kinds(DeleteCanary), event: "CanaryDeletedWhileRouted"},
		},
		"a recently disconnected proxy still routing to the canary keeps it after weight 0 is confirmed": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: rolledBack, Now: t0,
				Confirmed: &Confirmed{Weight: 0, Confirmation: Confirmation{Acked: 3, Holding: []string{"p2 on r2 (disconnected at T; waited for until U)"}}}},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, message: "p2 on r2 (disconnected"},
		},
		"confirmed rollback deletes the canary": {
			o: Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 1),
				Status: rolledBack, Confirmed: acked(0), Now: t0},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, started: at(0),
				actions: kinds(DeleteCanary)},
		},
		"a failed revision waits for retry": {
			o:    Observed{Deployment: pausedFor("b"), Spec: canary, Status: rolledBack, Now: t0},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, message: "run `sluice retry`"},
		},
		"retry starts the failed revision again": {
			o: Observed{Deployment: pausedFor("b"), Spec: retryB, Status: rolledBack, Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b",
				actions: []Action{{Kind: ClearRequests}, {Kind: EnsureCanary, Replicas: 1}}, message: "retried canary b"},
		},
		"a revision arriving during a promotion first drains the canary": {
			o:    Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 5), Status: promoting(5000, -1), Now: t0},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", step: 4, message: "revision c replaces canary b", event: "CanaryDraining"},
		},
		"a revision arriving during a promotion starts once the canary is drained": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 5), Status: promoting(0, -1),
				Confirmed: acked(0), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, stable: "b", canary: "c",
				actions: []Action{{Kind: ClearRequests}, {Kind: EnsureCanary, Replicas: 1}}, event: "CanarySuperseded"},
		},
		"promotion resumes a paused Deployment": {
			o:    Observed{Deployment: pausedFor("b"), Spec: canary, Canary: readyCanary("b", 5), Status: promoting(5000, -1), Now: t0},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", weight: 5000, step: 4, actions: kinds(UnpauseDeployment)},
		},
		"promotion waits for the rolling update": {
			o: Observed{Deployment: &DeploymentView{TemplateRevision: "b", Replicas: 10}, Spec: canary,
				Canary: readyCanary("b", 5), Status: promoting(5000, -1), Now: t0},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", weight: 5000, step: 4, message: "rolling update"},
		},
		"rolled out promotion drains the canary": {
			o:    Observed{Deployment: rolledOut, Spec: canary, Canary: readyCanary("b", 5), Status: promoting(5000, -1), Now: t0},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", step: 4, message: "draining"},
		},
		"drained canary is deleted once confirmed": {
			o: Observed{Deployment: rolledOut, Spec: canary, Canary: readyCanary("b", 5), Status: promoting(0, -1),
				Confirmed: acked(0), Now: t0},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", step: 4, started: at(0), actions: kinds(DeleteCanary)},
		},
		"promotion succeeds once the canary is gone": {
			o:    Observed{Deployment: rolledOut, Spec: canary, Status: promoting(0, 0), Now: t0},
			want: want{phase: v1alpha1.PhaseSucceeded, stable: "b", step: 4, message: "revision b is stable", event: "Promoted"},
		},
		"a leftover canary of a settled rollout is deleted": {
			o: Observed{Deployment: &DeploymentView{TemplateRevision: "b", Replicas: 1}, Spec: canary, Canary: readyCanary("b", 1),
				Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseSucceeded, StableRevision: "b"}},
			want: want{phase: v1alpha1.PhaseSucceeded, actions: kinds(DeleteCanary)},
		},
		"a leftover canary is re-templated, not deleted, when a new revision starts": {
			o: Observed{Deployment: pausedFor("c"), Spec: canary, Canary: readyCanary("b", 1),
				Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseSucceeded, StableRevision: "b"}},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "c",
				actions: []Action{{Kind: ClearRequests}, {Kind: EnsureCanary, Replicas: 1}}},
		},
		"a Deployment gone needs nothing": {
			o:    Observed{Spec: canary, Status: progressingAt(1, 500, at(0))},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 500, step: 1, started: at(0)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { check(t, tc.o, tc.want) })
	}
}

func TestStepHeldModes(t *testing.T) {
	beta := testSpec(v1alpha1.ModeBeta)
	betaPromote := beta
	betaPromote.Promote = &v1alpha1.RolloutAction{Revision: "b", RequestedAt: *at(0)}
	betaPromoteAgain := beta
	betaPromoteAgain.Promote = &v1alpha1.RolloutAction{Revision: "b", RequestedAt: *at(time.Hour)}
	ab := testSpec(v1alpha1.ModeAB)
	abAbort := ab
	abAbort.Abort = &v1alpha1.RolloutAction{Revision: "b"}
	released := func(s v1alpha1.RolloutStatus) v1alpha1.RolloutStatus { s.ReleasedAt = at(time.Minute); return s }

	tests := map[string]struct {
		o    Observed
		want want
	}{
		"beta routes only the cohort once the canary is ready": {
			o: Observed{Deployment: pausedFor("b"), Spec: beta, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 0, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", started: at(0),
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "only the cohort", event: "CohortRouted"},
		},
		"beta holds past any interval and analyses": {
			o: Observed{Deployment: pausedFor("b"), Spec: beta, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 0, at(0)), Samples: healthy, Now: t0.Add(time.Hour)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", started: at(0), analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "beta hold"},
		},
		"beta is still rolled back on errors": {
			o: Observed{Deployment: pausedFor("b"), Spec: beta, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 0, at(0)), Samples: critical, Now: t0.Add(time.Hour)},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, analysisSeen: true},
		},
		"promote releases beta into weighted steps": {
			o: Observed{Deployment: pausedFor("b"), Spec: betaPromote, Canary: readyCanary("b", 1),
				Status: progressingAt(0, 0, at(0)), Samples: healthy, Now: t0.Add(time.Minute)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, released: true, analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, event: "CohortReleased"},
		},
		"the releasing promote is not applied twice": {
			o: Observed{Deployment: pausedFor("b"), Spec: betaPromote, Canary: readyCanary("b", 1),
				Status: released(progressingAt(0, 100, at(time.Minute))), Now: t0.Add(time.Minute)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 100, released: true, started: at(time.Minute),
				actions: []Action{{Kind: EnsureCanary, Replicas: 1}}, message: "step 1/4"},
		},
		"a later promote skips the remaining beta steps": {
			o: Observed{Deployment: pausedFor("b"), Spec: betaPromoteAgain, Canary: readyCanary("b", 1),
				Status: released(progressingAt(0, 100, at(time.Minute))), Now: t0.Add(time.Hour)},
			want: want{phase: v1alpha1.PhasePromoting, canary: "b", weight: 100, released: true,
				actions: kinds(UnpauseDeployment)},
		},
		"ab sizes the canary for its split": {
			o: Observed{Deployment: pausedFor("b"), Spec: ab, Status: progressingAt(0, 0, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", actions: []Action{{Kind: EnsureCanary, Replicas: 5}},
				message: "ab hold: waiting for the canary to have 5 ready replicas"},
		},
		"ab moves to its split and waits for confirmation": {
			o: Observed{Deployment: pausedFor("b"), Spec: ab, Canary: readyCanary("b", 5), Status: progressingAt(0, 0, nil), Now: t0},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 5000,
				actions: []Action{{Kind: EnsureCanary, Replicas: 5}}},
		},
		"ab holds the split past any interval": {
			o: Observed{Deployment: pausedFor("b"), Spec: ab, Canary: readyCanary("b", 5),
				Status: progressingAt(0, 5000, at(0)), Samples: healthy, Now: t0.Add(24 * time.Hour)},
			want: want{phase: v1alpha1.PhaseProgressing, canary: "b", weight: 5000, started: at(0), analysisSeen: true,
				actions: []Action{{Kind: EnsureCanary, Replicas: 5}}, message: "until `sluice promote` or `sluice abort`"},
		},
		"ab is rolled back on errors": {
			o: Observed{Deployment: pausedFor("b"), Spec: ab, Canary: readyCanary("b", 5),
				Status: progressingAt(0, 5000, at(0)), Samples: critical, Now: t0.Add(time.Minute)},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, analysisSeen: true},
		},
		"ab abort rolls back": {
			o: Observed{Deployment: pausedFor("b"), Spec: abAbort, Canary: readyCanary("b", 5),
				Status: progressingAt(0, 5000, at(0)), Now: t0.Add(time.Minute)},
			want: want{phase: v1alpha1.PhaseRolledBack, canary: "b", failed: []string{"b"}, message: "aborted"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) { check(t, tc.o, tc.want) })
	}
}
