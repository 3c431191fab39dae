package rollout

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// progressing drives Progressing and Paused: follow the Deployment, apply user
// requests, analyse, then scale → move weight → confirm → hold the interval →
// advance.
func (m *stepper) progressing() {
	st := &m.st
	d := m.o.Deployment
	spec := m.o.Spec
	if rev := d.PendingRevision; rev != "" && rev != st.CanaryRevision {
		switch {
		case rev == st.StableRevision:
			m.abandon("the Deployment went back to the stable revision " + rev)
		case failed(st.FailedRevisions, rev) != nil && spec.RetryRevision != rev:
			m.abandon("the Deployment now asks for revision " + rev + ", which was rolled back before; run `sluice retry` to try it again")
		default:
			if !m.drainedFor(rev) {
				return
			}
			old := st.CanaryRevision
			m.start(rev)
			m.event(false, "CanarySuperseded", "revision %s replaced canary %s before it finished", rev, old)
		}
		return
	}
	if !d.Paused && d.PendingRevision == "" && d.TemplateRevision == st.CanaryRevision {
		m.toPromoting("the Deployment was resumed outside Sluice")
		return
	}
	if a := spec.Abort; a != nil && a.Revision == st.CanaryRevision {
		m.rollback("aborted"+requester(a), true)
		return
	}
	if p := spec.Promote; p != nil && p.Revision == st.CanaryRevision {
		switch {
		case spec.Delivery.Mode == v1alpha1.ModeBeta && st.ReleasedAt == nil:
			st.ReleasedAt = m.now()
			st.CurrentStepIndex = 0
			st.StepStartedAt = nil
			m.event(false, "CohortReleased", "promoted%s: the beta cohort hold ends and weighted steps begin", requester(p))
		case st.ReleasedAt == nil || p.RequestedAt.After(st.ReleasedAt.Time):
			m.toPromoting("promoted" + requester(p))
			return
		}
	}
	switch {
	case spec.Paused && st.Phase == v1alpha1.PhaseProgressing:
		st.Phase = v1alpha1.PhasePaused
		m.event(false, "Paused", "paused at canary weight %s", st.CurrentWeight)
	case !spec.Paused && st.Phase == v1alpha1.PhasePaused:
		st.Phase = v1alpha1.PhaseProgressing
		if st.StepStartedAt != nil {
			st.StepStartedAt = m.now()
		}
		m.event(false, "Resumed", "resumed at canary weight %s; the step's interval starts again", st.CurrentWeight)
	}
	m.requeue(AnalysisInterval)
	var outcome *analysis.Outcome
	if m.o.Samples != nil {
		outcome = m.analyse()
		if outcome != nil && outcome.Action == analysis.Rollback {
			m.rollback(outcome.Reason, true)
			return
		}
	}
	m.advance(outcome)
}

// advance moves the rollout through its current step's stages.
func (m *stepper) advance(outcome *analysis.Outcome) {
	st := &m.st
	d := m.o.Deployment
	spec := m.o.Spec
	paused := st.Phase == v1alpha1.PhasePaused
	tw, held := targetWeight(spec, *st)
	betaHold := spec.Delivery.Mode == v1alpha1.ModeBeta && held
	want := ReplicasFor(max(tw, st.CurrentWeight), d.Replicas)
	m.act(Action{Kind: EnsureCanary, Replicas: want})
	steps := len(spec.Delivery.Steps)
	where := fmt.Sprintf("step %d/%d", st.CurrentStepIndex+1, steps)
	if held {
		where = string(spec.Delivery.Mode) + " hold"
	}

	if st.CurrentWeight != tw || (betaHold && st.StepStartedAt == nil) {
		c := m.o.Canary
		if c == nil || c.Revision != st.CanaryRevision || c.ReadyReplicas < want {
			ready := int32(0)
			if c != nil && c.Revision == st.CanaryRevision {
				ready = c.ReadyReplicas
			}
			st.Message = fmt.Sprintf("%s: waiting for the canary to have %d ready replicas (has %d) before moving to %s",
				where, want, ready, tw)
			return
		}
		if paused {
			st.Message = fmt.Sprintf("paused at canary weight %s (%s)", st.CurrentWeight, where)
			return
		}
		st.CurrentWeight = tw
		st.StepStartedAt = nil
		if betaHold {
			st.StepStartedAt = m.now()
			st.Message = "beta hold: only the cohort reaches canary " + st.CanaryRevision + "; run `sluice promote` to start the weighted steps"
			m.event(false, "CohortRouted", "%s", st.Message)
			return
		}
		st.Message = fmt.Sprintf("%s: canary weight set to %s, waiting for proxies to acknowledge", where, tw)
		m.event(false, "WeightSet", "%s", st.Message)
		return
	}
	if st.StepStartedAt == nil && !m.confirm(tw) {
		return
	}
	if paused {
		st.Message = fmt.Sprintf("paused at canary weight %s (%s)", st.CurrentWeight, where)
		return
	}
	if held {
		st.Message = fmt.Sprintf("%s at canary weight %s: analysing until `sluice promote` or `sluice abort`", where, st.CurrentWeight)
		m.holdReason(outcome)
		return
	}
	interval := stepInterval(spec.Delivery)
	if left := interval - m.o.Now.Sub(st.StepStartedAt.Time); left > 0 {
		st.Message = fmt.Sprintf("%s at canary weight %s: analysing, %s left", where, st.CurrentWeight, left.Round(time.Second))
		m.holdReason(outcome)
		m.requeue(min(left, AnalysisInterval))
		return
	}
	if outcome == nil || outcome.Action != analysis.Continue {
		reason := "no analysis yet"
		if outcome != nil {
			reason = outcome.Reason
		}
		st.Message = fmt.Sprintf("%s at canary weight %s: interval elapsed, held by analysis: %s", where, st.CurrentWeight, reason)
		return
	}
	m.event(false, "StepPassed", "%s at canary weight %s passed analysis", where, st.CurrentWeight)
	st.CurrentStepIndex++
	st.StepStartedAt = nil
	if int(st.CurrentStepIndex) >= steps {
		m.toPromoting("all " + strconv.Itoa(steps) + " steps passed")
		return
	}
	next := spec.Delivery.Steps[st.CurrentStepIndex]
	m.res.Actions[len(m.res.Actions)-1].Replicas = ReplicasFor(max(next, st.CurrentWeight), d.Replicas)
	st.Message = fmt.Sprintf("step %d/%d: preparing the canary for %s", st.CurrentStepIndex+1, steps, next)
}

// drainedFor reports whether the canary may be re-templated for rev, the
// revision that replaces it. Re-templating replaces the canary's pods, so a
// canary that may carry traffic first goes to weight 0, and the proxies must
// confirm it as they do before a rolled-back canary is deleted; only then do
// the new revision's steps start. Until then the rollout stays on the old
// canary's revision.
func (m *stepper) drainedFor(rev string) bool {
	st := &m.st
	if m.o.Canary == nil {
		return true
	}
	m.requeue(AnalysisInterval)
	what := fmt.Sprintf("revision %s replaces canary %s", rev, st.CanaryRevision)
	if st.CurrentWeight != 0 || st.StepStartedAt != nil {
		st.CurrentWeight = 0
		st.StepStartedAt = nil
		st.Message = what + ": canary weight set to 0, waiting for proxies to acknowledge before the canary is replaced"
		m.event(false, "CanaryDraining", "%s", st.Message)
		return false
	}
	if !m.canaryUnrouted() {
		st.Message = what + ": " + st.Message
		return false
	}
	return true
}

// replacing reports whether the Deployment's pending revision replaces the
// rollout's canary rather than abandoning it (see progressing and promoting).
func replacing(o Observed) bool {
	st := o.Status
	rev := o.Deployment.PendingRevision
	if rev == "" || rev == st.CanaryRevision {
		return false
	}
	if st.Phase == v1alpha1.PhasePromoting {
		return true
	}
	return rev != st.StableRevision && (failed(st.FailedRevisions, rev) == nil || o.Spec.RetryRevision == rev)
}

// holdReason appends the analysis' reason for not continuing to the message.
func (m *stepper) holdReason(outcome *analysis.Outcome) {
	if outcome != nil && outcome.Action != analysis.Continue {
		m.st.Message += " (analysis holds: " + outcome.Reason + ")"
	}
}

// toPromoting starts the promotion: the Deployment rolls to the canary's
// revision while the canary keeps its weight.
func (m *stepper) toPromoting(reason string) {
	st := &m.st
	st.Phase = v1alpha1.PhasePromoting
	st.StepStartedAt = nil
	st.Message = "promoting " + st.CanaryRevision + ": " + reason
	m.event(false, "Promoting", "%s", st.Message)
	m.act(Action{Kind: UnpauseDeployment})
	m.requeue(AnalysisInterval)
}

// promoting waits for the Deployment's rolling update, then drains and
// deletes the canary.
func (m *stepper) promoting() {
	st := &m.st
	d := m.o.Deployment
	m.requeue(AnalysisInterval)
	if rev := d.PendingRevision; rev != "" && rev != st.CanaryRevision {
		if !m.drainedFor(rev) {
			return
		}
		st.StableRevision = st.CanaryRevision
		old := st.CanaryRevision
		m.start(rev)
		m.event(false, "CanarySuperseded", "revision %s arrived while %s was promoting; %s is now stable", rev, old, old)
		return
	}
	if d.Paused || d.PendingRevision != "" {
		m.act(Action{Kind: UnpauseDeployment})
		st.Message = "promoting " + st.CanaryRevision + ": resuming the Deployment"
		return
	}
	if !d.RolledOut || d.TemplateRevision != st.CanaryRevision {
		st.Message = "promoting " + st.CanaryRevision + ": waiting for the Deployment's rolling update to finish"
		return
	}
	if st.CurrentWeight != 0 {
		st.CurrentWeight = 0
		st.StepStartedAt = nil
		st.Message = "promoting " + st.CanaryRevision + ": the Deployment rolled out; draining the canary"
		return
	}
	if m.o.Canary != nil {
		if st.StepStartedAt == nil && !m.confirm(0) {
			return
		}
		m.act(Action{Kind: DeleteCanary})
		st.Message = "promoting " + st.CanaryRevision + ": deleting the drained canary"
		return
	}
	st.Phase = v1alpha1.PhaseSucceeded
	st.StableRevision = st.CanaryRevision
	st.CanaryRevision = ""
	st.CanaryStartedAt = nil
	st.Counts = nil
	st.StepStartedAt = nil
	st.Message = "revision " + st.StableRevision + " is stable"
	m.event(false, "Promoted", "%s", st.Message)
	m.res.RequeueAfter = 0
}

func requester(a *v1alpha1.RolloutAction) string {
	s := ""
	if a.RequestedBy != "" {
		s += " by " + a.RequestedBy
	}
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	return s
}

// analyse runs the analysis on the samples and records its decisions.
func (m *stepper) analyse() *analysis.Outcome {
	st := &m.st
	cfg, err := AnalysisConfig(m.o.Spec.Delivery)
	if err != nil {
		m.event(true, "AnalysisConfigInvalid", "%v", err)
		return nil
	}
	var state analysis.State
	if st.LastAnalysisTime != nil {
		state.LastEvaluated = st.LastAnalysisTime.Time
	}
	out, next, err := analysis.Evaluate(state, *m.o.Samples, cfg, m.o.Now)
	if err != nil {
		m.event(true, "AnalysisFailed", "%v", err)
		return nil
	}
	// Analyses in a row with a failed check: a failure rolls back at once,
	// so this is 1 on the analysis that rolled back and 0 otherwise. A
	// replay of an evaluation already recorded is not counted again.
	if replay := st.LastAnalysisTime != nil && !m.o.Now.After(st.LastAnalysisTime.Time); !replay {
		st.AnalysisFailures = 0
		if out.Action == analysis.Rollback {
			st.AnalysisFailures = 1
		}
	}
	if m.o.Provenance != nil {
		st.Sources = sourcesStatus(*m.o.Provenance)
	}
	if m.o.Counts != nil {
		st.Counts = m.o.Counts
	}
	if !next.LastEvaluated.IsZero() {
		t := metav1.NewTime(next.LastEvaluated)
		st.LastAnalysisTime = &t
	}
	prev := signature(st.Analysis, len(out.Decisions))
	for _, d := range out.Decisions {
		st.Analysis = append(st.Analysis, decision(d, st.CurrentStepIndex, m.o.Now))
	}
	if n := len(st.Analysis); n > v1alpha1.MaxAnalysisDecisions {
		st.Analysis = st.Analysis[n-v1alpha1.MaxAnalysisDecisions:]
	}
	if now := signature(st.Analysis, len(out.Decisions)); now != prev {
		m.event(out.Action != analysis.Continue, "Analysis"+string(out.Action), "%s", out.Reason)
	}
	m.res.Outcome = &out
	return &out
}

// signature summarises the last n decisions' verdicts, to tell when they change.
func signature(ds []v1alpha1.AnalysisDecision, n int) string {
	var b strings.Builder
	for _, d := range ds[max(len(ds)-n, 0):] {
		b.WriteString(d.Metric + "=" + string(d.Verdict) + ";")
	}
	return b.String()
}

func decision(d analysis.Decision, step int32, now time.Time) v1alpha1.AnalysisDecision {
	v := v1alpha1.VerdictInconclusive
	switch d.Verdict {
	case analysis.Pass:
		v = v1alpha1.VerdictPass
	case analysis.Fail:
		v = v1alpha1.VerdictFail
	}
	return v1alpha1.AnalysisDecision{
		Metric:    d.Metric,
		Value:     strconv.FormatFloat(d.Value, 'g', 4, 64),
		Threshold: strconv.FormatFloat(d.Threshold, 'g', 4, 64),
		Samples:   int64(min(d.Samples, 1<<62)),
		Verdict:   v,
		Step:      step,
		Time:      metav1.NewTime(now),
	}
}
