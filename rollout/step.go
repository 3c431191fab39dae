package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/text"
)

// NeedsOf says which confirmations and samples Step will use for o; the shell
// gathers them and sets o.Confirmed and o.Samples before calling Step.
func NeedsOf(o Observed) Needs {
	var n Needs
	st := o.Status
	if o.Deployment == nil {
		return n
	}
	if st.Phase.Active() && replacing(o) {
		// A newer revision waits for the canary's weight 0 (drainedFor).
		if o.Canary != nil && st.CurrentWeight == 0 && st.StepStartedAt == nil {
			w := v1alpha1.BasisPoints(0)
			n.Confirm = &w
		}
		return n
	}
	switch st.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused:
		tw, held := targetWeight(o.Spec, st)
		beta := o.Spec.Delivery.Mode == v1alpha1.ModeBeta && held
		if st.StepStartedAt == nil && st.CurrentWeight == tw && !beta && o.Canary != nil {
			w := st.CurrentWeight
			n.Confirm = &w
		}
		if o.Canary != nil && (st.CurrentWeight > 0 || held) {
			n.Analyse = true
			n.Cumulative, n.Recent = RecentWindow, RecentWindow
			// The canary's samples are its own revision's (the shell asks
			// for st.CanaryRevision), and windows never reach back before
			// it began: the cumulative window is everything since.
			if began := canaryStart(st); !began.IsZero() {
				n.Since = began
				n.Cumulative = max(o.Now.Sub(began), time.Second)
				n.Recent = min(RecentWindow, n.Cumulative)
			}
		}
	case v1alpha1.PhasePromoting, v1alpha1.PhaseRolledBack:
		if st.CurrentWeight == 0 && st.StepStartedAt == nil && o.Canary != nil &&
			(st.Phase == v1alpha1.PhaseRolledBack || o.Deployment.RolledOut) {
			w := v1alpha1.BasisPoints(0)
			n.Confirm = &w
		}
	}
	return n
}

// Step decides the next status and actions from the observed world. It is
// pure and idempotent: stepping the same observation twice gives the same
// result, and stepping the status it returned, once its actions took effect,
// moves on.
func Step(o Observed) Result {
	m := &stepper{o: o, st: *o.Status.DeepCopy()}
	m.run()
	m.finish()
	return m.res
}

// stepper carries one Step's working state.
type stepper struct {
	o   Observed
	st  v1alpha1.RolloutStatus
	res Result
}

func (m *stepper) act(a Action) { m.res.Actions = append(m.res.Actions, a) }

func (m *stepper) event(warning bool, reason, format string, args ...any) {
	m.res.Events = append(m.res.Events, Event{Warning: warning, Reason: reason,
		Message: text.Truncate(fmt.Sprintf(format, args...), maxStatusMessage)})
}

// maxStatusMessage bounds status.message and Event messages, which may quote
// several proxies' NACK details; each detail is bounded to text.MaxMessage
// where it is received.
const maxStatusMessage = 2 * text.MaxMessage

// maxNackDetails is how many proxies' NACK details a message quotes.
const maxNackDetails = 3

func (m *stepper) requeue(d time.Duration) {
	if m.res.RequeueAfter == 0 || d < m.res.RequeueAfter {
		m.res.RequeueAfter = d
	}
}

func (m *stepper) now() *metav1.Time {
	t := metav1.NewTime(m.o.Now)
	return &t
}

func (m *stepper) run() {
	if m.o.Deployment == nil {
		return
	}
	if m.st.Phase == "" {
		m.st.Phase = v1alpha1.PhaseIdle
	}
	if !opted(m.o.Spec.Delivery.Mode) {
		m.optedOut()
		return
	}
	switch m.st.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused:
		m.progressing()
	case v1alpha1.PhasePromoting:
		m.promoting()
	case v1alpha1.PhaseRolledBack:
		m.rolledBack()
	default:
		m.settled()
	}
}

// finish writes the derived fields and conditions.
func (m *stepper) finish() {
	st := &m.st
	st.CurrentWeightPercent = st.CurrentWeight.String()
	// Text from outside (proxies' NACK details, sources' errors) is bounded
	// here, whatever path put it on the status, so that no status write is
	// ever refused for its size.
	st.Message = text.Truncate(st.Message, maxStatusMessage)
	st.Proxies.LastNack = text.Truncate(st.Proxies.LastNack, maxStatusMessage)
	for i := range st.FailedRevisions {
		st.FailedRevisions[i].Reason = text.Truncate(st.FailedRevisions[i].Reason, maxStatusMessage)
	}
	if m.o.Deployment == nil {
		m.res.Status = *st
		return
	}
	now := metav1.NewTime(m.o.Now)
	cond := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg,
			LastTransitionTime: now})
	}
	cond(v1alpha1.ConditionAvailable, true, "StableServing", "revision "+st.StableRevision+" serves by default")
	if st.Phase.Active() {
		cond(v1alpha1.ConditionProgressing, true, string(st.Phase), st.Message)
	} else {
		cond(v1alpha1.ConditionProgressing, false, string(st.Phase), st.Message)
	}
	switch {
	case st.Proxies.Nacked > 0:
		cond(v1alpha1.ConditionConfigApplied, false, "Nacked", st.Proxies.LastNack)
	case st.StepStartedAt != nil || !st.Phase.Active():
		cond(v1alpha1.ConditionConfigApplied, true, "Acked",
			fmt.Sprintf("%d proxies acknowledged the routes", st.Proxies.Acked))
	default:
		cond(v1alpha1.ConditionConfigApplied, false, "Pending", "waiting for proxies to acknowledge "+st.CurrentWeight.String())
	}
	m.setTrafficReady(now)
	m.res.Status = *st
}

// optedOut ends any rollout of a Deployment that left progressive delivery:
// traffic back to stable, canary deleted, Deployment unpaused so that
// Kubernetes' own rolling update applies.
func (m *stepper) optedOut() {
	d := m.o.Deployment
	if m.st.Phase.Active() {
		m.abandon("the Deployment left progressive delivery (sluice.dev/rollout is " + modeName(m.o.Spec.Delivery.Mode) + ")")
		return
	}
	if m.st.Phase == v1alpha1.PhaseRolledBack && m.o.Canary != nil {
		m.rolledBack()
		return
	}
	if d.Paused || d.PendingRevision != "" {
		m.act(Action{Kind: UnpauseDeployment})
		m.st.Message = "not opted in: the Deployment rolls out natively"
	}
	if !d.Paused && d.TemplateRevision != "" {
		m.st.StableRevision = d.TemplateRevision
	}
}

func modeName(m v1alpha1.DeliveryMode) string {
	if m == "" {
		return "absent"
	}
	return string(m)
}

// settled handles Idle, Succeeded and a finished RolledBack: adopt what
// Kubernetes rolled out, clean a leftover canary, or start a canary for a
// pending revision.
func (m *stepper) settled() {
	d := m.o.Deployment
	st := &m.st
	rev := d.PendingRevision
	starting := rev != "" && st.StableRevision != "" && rev != st.StableRevision &&
		(failed(st.FailedRevisions, rev) == nil || m.o.Spec.RetryRevision == rev)
	if m.o.Canary != nil && !starting {
		// A leftover canary; a starting one is re-templated instead.
		m.act(Action{Kind: DeleteCanary})
		m.requeue(time.Second)
	}
	if rev == "" {
		if !d.Paused && d.TemplateRevision != "" && d.TemplateRevision != st.StableRevision {
			if st.StableRevision == "" {
				st.Message = "revision " + d.TemplateRevision + " is stable"
			} else {
				st.Message = "revision " + d.TemplateRevision + " rolled out without a canary"
			}
			st.StableRevision = d.TemplateRevision
		}
		return
	}
	if st.StableRevision == "" {
		st.StableRevision = rev
		m.act(Action{Kind: UnpauseDeployment})
		st.Message = "no stable revision was known when revision " + rev + " arrived: it rolls out natively and becomes stable"
		m.event(true, "NoStableRevision", "%s", st.Message)
		return
	}
	if rev == st.StableRevision {
		m.act(Action{Kind: UnpauseDeployment})
		st.Message = "revision " + rev + " is the stable revision: resuming the Deployment"
		return
	}
	if f := failed(st.FailedRevisions, rev); f != nil && m.o.Spec.RetryRevision != rev {
		st.Message = fmt.Sprintf("revision %s was rolled back (%s); run `sluice retry` to try it again", rev, f.Reason)
		return
	}
	m.start(rev)
}

// start begins delivering rev through a canary.
func (m *stepper) start(rev string) {
	st := &m.st
	retry := failed(st.FailedRevisions, rev) != nil
	st.FailedRevisions = slices.DeleteFunc(st.FailedRevisions, func(f v1alpha1.FailedRevision) bool {
		return f.Revision == rev
	})
	st.Phase = v1alpha1.PhaseProgressing
	st.CanaryRevision = rev
	// Stored times keep whole seconds: round up, so the origin is never
	// before the revision began.
	started := metav1.NewTime(m.o.Now.Add(time.Second - 1).Truncate(time.Second))
	st.CanaryStartedAt = &started
	st.Counts = nil
	st.CurrentStepIndex = 0
	st.CurrentWeight = 0
	st.StepStartedAt = nil
	st.ReleasedAt = nil
	st.AnalysisFailures = 0
	st.LastAnalysisTime = nil
	st.Analysis = nil
	st.Proxies = v1alpha1.ProxyStatus{}
	tw, _ := targetWeight(m.o.Spec, *st)
	m.act(Action{Kind: ClearRequests})
	m.act(Action{Kind: EnsureCanary, Replicas: ReplicasFor(tw, m.o.Deployment.Replicas)})
	verb := "started"
	if retry {
		verb = "retried"
	}
	st.Message = fmt.Sprintf("%s canary %s (%s) against stable %s", verb, rev, m.o.Spec.Delivery.Mode, st.StableRevision)
	m.event(false, "CanaryStarted", "%s", st.Message)
	m.requeue(AnalysisInterval)
}

func failed(fs []v1alpha1.FailedRevision, rev string) *v1alpha1.FailedRevision {
	for i := range fs {
		if fs[i].Revision == rev {
			return &fs[i]
		}
	}
	return nil
}

// rollback sends all traffic back to stable at once and records rev as
// failed when record is set. The canary is deleted once proxies confirm.
func (m *stepper) rollback(reason string, record bool) {
	st := &m.st
	from := describe(*st)
	st.Phase = v1alpha1.PhaseRolledBack
	st.CurrentWeight = 0
	st.StepStartedAt = nil
	if record && st.CanaryRevision != "" {
		st.FailedRevisions = slices.DeleteFunc(st.FailedRevisions, func(f v1alpha1.FailedRevision) bool {
			return f.Revision == st.CanaryRevision
		})
		st.FailedRevisions = append(st.FailedRevisions, v1alpha1.FailedRevision{
			Revision: st.CanaryRevision, Reason: reason, Time: metav1.NewTime(m.o.Now)})
		if n := len(st.FailedRevisions); n > maxFailedRevisions {
			st.FailedRevisions = st.FailedRevisions[n-maxFailedRevisions:]
		}
	}
	st.Message = "rolled back " + from + ": " + reason
	m.event(true, "RolledBack", "%s", st.Message)
	m.requeue(AnalysisInterval)
}

// abandon ends the canary without recording a failure.
func (m *stepper) abandon(reason string) {
	m.rollback(reason, false)
	m.res.Events[len(m.res.Events)-1].Reason = "CanaryAbandoned"
	m.st.Message = "abandoned " + strings.TrimPrefix(m.st.Message, "rolled back ")
}

// rolledBack finishes a rollback: confirm weight 0, then delete the canary.
func (m *stepper) rolledBack() {
	st := &m.st
	if m.o.Canary == nil {
		m.settled()
		return
	}
	if st.CurrentWeight != 0 {
		st.CurrentWeight = 0
		st.StepStartedAt = nil
	}
	if st.StepStartedAt == nil && !m.canaryUnrouted() {
		m.requeue(AnalysisInterval)
		return
	}
	m.act(Action{Kind: DeleteCanary})
	m.requeue(AnalysisInterval)
}

// canaryUnrouted reports whether the canary of a rollback can be deleted:
// weight 0 is confirmed, and no proxy that does not carry it may still send
// the canary traffic. A proxy that rejected weight 0 does not hold the
// deletion when its last acknowledged routes never reached the canary; one
// whose routes did (or that disconnected recently with such routes) holds
// it until the deletion wait ends, then the canary is deleted anyway.
func (m *stepper) canaryUnrouted() bool {
	st := &m.st
	c := m.o.Confirmed
	if c != nil && c.Weight == 0 && len(c.Holding) > 0 {
		msg := text.Truncate(strings.Join(c.Holding, "; "), maxStatusMessage)
		st.Message = "waiting to delete the canary: proxies may still send it traffic: " + msg
		return false
	}
	if m.confirm(0) {
		if len(c.Overdue) > 0 {
			m.overdue(c.Overdue)
		}
		return true
	}
	if c == nil || c.Weight != 0 || c.Nacked == 0 {
		return false
	}
	// Rejected weight 0, but their acknowledged routes never reach the
	// canary (or have waited for longer than the bound).
	st.StepStartedAt = nil
	if len(c.Overdue) > 0 {
		m.overdue(c.Overdue)
	} else {
		m.event(false, "CanaryUnrouted", "%d proxies rejected weight 0, but their acknowledged routes do not send the canary traffic; deleting it", c.Nacked)
	}
	return true
}

// overdue says that the canary is deleted although proxies may still send
// it traffic.
func (m *stepper) overdue(who []string) {
	m.event(true, "CanaryDeletedWhileRouted", "deleting the canary although proxies may still send it traffic, after waiting for them: %s",
		text.Truncate(strings.Join(who, "; "), maxStatusMessage))
}

// confirm applies the traffic controller's answer for weight w and reports
// whether every proxy carries it.
func (m *stepper) confirm(w v1alpha1.BasisPoints) bool {
	st := &m.st
	c := m.o.Confirmed
	if c == nil || c.Weight != w {
		st.Message = "waiting for proxies to acknowledge weight " + w.String()
		if m.o.Unconfirmed != "" {
			st.Message += ": " + text.Truncate(m.o.Unconfirmed, text.MaxMessage)
		}
		return false
	}
	st.Proxies.Acked = int32(c.Acked)
	st.Proxies.Nacked = int32(c.Nacked)
	st.Proxies.Stale = int32(len(c.Stale))
	st.Proxies.Replicas = nil
	for _, r := range c.Replicas[:min(len(c.Replicas), v1alpha1.MaxReplicaProxies)] {
		r.Replica = text.Truncate(r.Replica, 253)
		st.Proxies.Replicas = append(st.Proxies.Replicas, r)
	}
	st.Proxies.Limits = nil
	for _, l := range c.Limits[:min(len(c.Limits), v1alpha1.MaxProxyLimits)] {
		st.Proxies.Limits = append(st.Proxies.Limits, text.Truncate(l, text.MaxMessage))
	}
	st.Proxies.StaleNodes = nil
	if len(c.Stale) > 0 {
		st.Proxies.StaleNodes = slices.Clone(c.Stale[:min(len(c.Stale), v1alpha1.MaxStaleNodes)])
		for i, n := range st.Proxies.StaleNodes {
			st.Proxies.StaleNodes[i] = text.Truncate(n, 253)
		}
	}
	if c.Nacked > 0 {
		details := c.NackMessages
		if len(details) > maxNackDetails {
			details = append(slices.Clone(details[:maxNackDetails]), fmt.Sprintf("and %d more", len(c.NackMessages)-maxNackDetails))
		}
		msg := text.Truncate(strings.Join(details, "; "), maxStatusMessage)
		if msg == "" {
			msg = "no detail given"
		}
		if st.Proxies.LastNack != msg {
			m.event(true, "ConfigRejected", "%d proxies rejected the routes for weight %s: %s", c.Nacked, w, msg)
		}
		st.Proxies.LastNack = msg
		st.Proxies.LastNackTime = m.now()
		st.Message = fmt.Sprintf("held: %d proxies rejected the routes for weight %s: %s", c.Nacked, w, msg)
		return false
	}
	// Stored times have whole seconds: round up so that a step is never held
	// shorter than its interval after a restart.
	started := metav1.NewTime(m.o.Now.Add(time.Second - 1).Truncate(time.Second))
	st.StepStartedAt = &started
	if len(c.Stale) > 0 {
		m.event(true, "StaleProxies", "%d proxies carry canary weight %s; %d stale proxies were not waited for: %s",
			c.Acked, w, len(c.Stale), strings.Join(st.Proxies.StaleNodes, ", "))
	} else {
		m.event(false, "WeightConfirmed", "%d proxies carry canary weight %s", c.Acked, w)
	}
	return true
}

// canaryStart is when the current canary revision began (status
// canaryStartedAt). It is zero when unknown.
func canaryStart(st v1alpha1.RolloutStatus) time.Time {
	if st.CanaryStartedAt != nil {
		return st.CanaryStartedAt.Time
	}
	// Rollouts started before canaryStartedAt existed: the Progressing
	// condition's transition, which a replacing revision does not move.
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionProgressing)
	if c == nil || c.Status != metav1.ConditionTrue {
		return time.Time{}
	}
	return c.LastTransitionTime.Add(time.Second)
}
