package notify

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/text"
)

// Kind is what happened to a rollout.
type Kind string

// Notification kinds.
const (
	// Started: a canary revision began its delivery.
	Started Kind = "RolloutStarted"
	// StepReached: every proxy carries the canary weight of a step.
	StepReached Kind = "StepReached"
	// Held: the analysis holds the rollout, or a person paused it.
	Held Kind = "RolloutHeld"
	// RolledBack: the canary was rolled back.
	RolledBack Kind = "RolledBack"
	// Promoted: the canary revision is now stable.
	Promoted Kind = "Promoted"
)

// maxReason bounds the reason carried by a message.
const maxReason = 1024

// Message is the JSON body a receiver gets.
type Message struct {
	Kind      Kind   `json:"kind"`
	Namespace string `json:"namespace"`
	Rollout   string `json:"rollout"`
	Service   string `json:"service,omitempty"`
	// Revision is the canary revision the message is about.
	Revision       string `json:"revision,omitempty"`
	StableRevision string `json:"stableRevision,omitempty"`
	Phase          string `json:"phase"`
	// Weight is the canary's share of traffic, e.g. "20%".
	Weight string `json:"weight"`
	// Step is the 1-based step reached, of Steps.
	Step  int32 `json:"step,omitempty"`
	Steps int   `json:"steps,omitempty"`
	// Reason says why: the hold's or rollback's reason, the status message
	// otherwise.
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

// Text is the message in a sentence, for chat receivers.
func (m Message) Text() string {
	what := map[Kind]string{
		Started:     "rollout started",
		StepReached: fmt.Sprintf("step %d of %d reached (canary at %s)", m.Step, m.Steps, m.Weight),
		Held:        "rollout held",
		RolledBack:  "rolled back",
		Promoted:    "promoted",
	}[m.Kind]
	switch m.Kind {
	case DependencyFailing:
		return fmt.Sprintf("%s: %s is failing: %s", m.Namespace, m.Service, m.Reason)
	case DependencyRecovered:
		return fmt.Sprintf("%s: %s recovered: %s", m.Namespace, m.Service, m.Reason)
	}
	s := fmt.Sprintf("%s/%s: %s", m.Namespace, m.Rollout, what)
	if m.Revision != "" {
		s += " (revision " + m.Revision + ")"
	}
	if m.Reason != "" {
		s += ": " + m.Reason
	}
	return s
}

// holdMarker precedes the analysis' reason in the message of a rollout
// whose step interval elapsed without the analysis letting it advance.
// Holds within the interval (too few samples yet) are how every step
// begins, and not news.
const holdMarker = "interval elapsed, held by analysis: "

// Transitions returns the notifications for a Rollout whose status went
// from old to cur, in the order they happened. It is pure: now stamps the
// messages.
func Transitions(ro *v1alpha1.Rollout, old v1alpha1.RolloutStatus, now time.Time) []Message {
	cur := ro.Status
	base := Message{
		Namespace: ro.Namespace, Rollout: ro.Name, Service: ro.Spec.Delivery.Service,
		Revision: cur.CanaryRevision, StableRevision: cur.StableRevision, Phase: string(cur.Phase),
		Weight: cur.CurrentWeight.String(), Steps: len(ro.Spec.Delivery.Steps), Time: now,
	}
	msg := func(k Kind, reason string) Message {
		m := base
		m.Kind, m.Reason = k, text.Truncate(reason, maxReason)
		return m
	}
	var out []Message
	newCanary := cur.CanaryRevision != "" && cur.CanaryRevision != old.CanaryRevision
	if newCanary && (cur.Phase == v1alpha1.PhaseProgressing || cur.Phase == v1alpha1.PhasePaused) {
		out = append(out, msg(Started, cur.Message))
	}
	if stepReached(old, cur, newCanary) {
		m := msg(StepReached, "")
		m.Step = cur.CurrentStepIndex + 1
		out = append(out, m)
	}
	// A hold is told once when it begins: its reason's figures change at
	// every analysis.
	if reason, ok := held(cur); ok {
		if _, wasHeld := held(old); !wasHeld || newCanary || cur.Phase != old.Phase {
			out = append(out, msg(Held, reason))
		}
	}
	switch {
	case cur.Phase == v1alpha1.PhaseRolledBack && old.Phase != v1alpha1.PhaseRolledBack:
		m := msg(RolledBack, cur.Message)
		if n := len(cur.FailedRevisions); n > 0 {
			m.Revision, m.Reason = cur.FailedRevisions[n-1].Revision, text.Truncate(cur.FailedRevisions[n-1].Reason, maxReason)
		}
		out = append(out, m)
	case cur.Phase == v1alpha1.PhaseSucceeded && old.Phase != v1alpha1.PhaseSucceeded:
		m := msg(Promoted, cur.Message)
		m.Revision = cur.StableRevision
		out = append(out, m)
	}
	return out
}

// stepReached says whether the proxies just confirmed a weighted step.
func stepReached(old, cur v1alpha1.RolloutStatus, newCanary bool) bool {
	if cur.Phase != v1alpha1.PhaseProgressing || cur.StepStartedAt == nil || cur.CurrentWeight == 0 {
		return false
	}
	if newCanary || old.StepStartedAt == nil {
		return true
	}
	return cur.CurrentStepIndex != old.CurrentStepIndex || cur.CurrentWeight != old.CurrentWeight
}

// held returns why a rollout is held: paused by a person, or the analysis'
// reason for not continuing.
func held(st v1alpha1.RolloutStatus) (string, bool) {
	if st.Phase == v1alpha1.PhasePaused {
		return "paused: " + st.Message, true
	}
	if st.Phase != v1alpha1.PhaseProgressing {
		return "", false
	}
	i := strings.Index(st.Message, holdMarker)
	if i < 0 {
		return "", false
	}
	return st.Message[i+len(holdMarker):], true
}
