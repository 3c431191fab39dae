package rollout

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/text"
)

// Reasons of the TrafficReady condition.
const (
	// ReasonTrafficNoProblem: the traffic side reports no problem with the
	// service's objects and no proxy rejects its routes. (A service with no
	// pods has nothing to publish, and no problem either.)
	ReasonTrafficNoProblem = "NoProblem"
	// ReasonTrafficProblem: the traffic side cannot publish the routes as
	// the objects ask; the message says why and what it does instead.
	ReasonTrafficProblem = "TrafficProblem"
	// ReasonProxiesRejected: proxies reject the published routes.
	ReasonProxiesRejected = "ProxiesRejected"
)

// trafficRecheck is how often a Rollout whose traffic is not ready is looked
// at again, so that the condition clears soon after the cause is fixed even
// when no object of the Rollout changes.
const trafficRecheck = 10 * time.Second

// trafficCondition is the TrafficReady condition's status, reason and
// message for a report. Problems come before rejections: a rejection of
// routes that are not the ones asked for is a consequence.
func trafficCondition(r TrafficReport) (ready bool, reason, msg string) {
	switch {
	case len(r.Problems) > 0:
		return false, ReasonTrafficProblem, summarize("the routes are not published as asked: ", r.Problems)
	case len(r.Nacks) > 0:
		return false, ReasonProxiesRejected, summarize("proxies reject the published routes: ", r.Nacks)
	}
	return true, ReasonTrafficNoProblem, "the traffic side reports no problem with the service's objects and no proxy rejects its routes"
}

// summarize joins the first few items, each bounded, under a bounded total.
func summarize(prefix string, items []string) string {
	shown := make([]string, 0, maxNackDetails+1)
	for _, it := range items[:min(len(items), maxNackDetails)] {
		shown = append(shown, text.Truncate(it, text.MaxMessage))
	}
	if len(items) > maxNackDetails {
		shown = append(shown, fmt.Sprintf("and %d more", len(items)-maxNackDetails))
	}
	return text.Truncate(prefix+strings.Join(shown, "; "), maxStatusMessage)
}

// trafficSeparator starts the part of status.message that says why the
// traffic is not ready; it is replaced at every step, so it goes once the
// cause is fixed.
const trafficSeparator = " | traffic: "

// setTrafficReady writes the TrafficReady condition from the traffic
// side's report, with a Warning event when a new reason appears, and looks
// again soon while the traffic is not ready. While it is not, status.message
// ends with the reason too: a Rollout whose weight cannot be published says
// why, not only that it waits.
func (m *stepper) setTrafficReady(now metav1.Time) {
	if m.o.Traffic == nil {
		return
	}
	ready, reason, msg := trafficCondition(*m.o.Traffic)
	base, _, _ := strings.Cut(m.st.Message, trafficSeparator)
	m.st.Message = base
	status := metav1.ConditionTrue
	if !ready {
		m.st.Message = text.Truncate(base, text.MaxMessage) + trafficSeparator + msg
		m.st.Message = text.Truncate(m.st.Message, maxStatusMessage)
		status = metav1.ConditionFalse
		m.requeue(trafficRecheck)
		if old := meta.FindStatusCondition(m.o.Status.Conditions, v1alpha1.ConditionTrafficReady); old == nil || old.Message != msg {
			m.event(true, reason, "%s", msg)
		}
	}
	meta.SetStatusCondition(&m.st.Conditions, metav1.Condition{Type: v1alpha1.ConditionTrafficReady, Status: status,
		Reason: reason, Message: msg, LastTransitionTime: now})
}
