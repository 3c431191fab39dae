package rollout

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/text"
)

// TestTrafficReady: what the traffic side cannot publish, or proxies reject,
// is on the Rollout's TrafficReady condition and, while a weight waits for
// the proxies, in status.message, bounded; it clears once the report is
// clean.
func TestTrafficReady(t *testing.T) {
	waiting := func(r *TrafficReport) Observed {
		return Observed{Deployment: pausedFor("b"), Spec: testSpec(v1alpha1.ModeCanary), Canary: readyCanary("b", 1),
			Status: progressingAt(0, 100, nil), Now: t0, Traffic: r}
	}
	huge := strings.Repeat("é", 1<<20)
	tests := map[string]struct {
		report      *TrafficReport
		status      metav1.ConditionStatus
		reason      string
		contains    string
		messageHas  string
		event       bool
		wantRecheck bool
	}{
		"a problem holds with its reason": {
			report: &TrafficReport{Problems: []string{`rollout/b: rollouts "a" and "b" are both active for this service; "a" steers it`}},
			status: metav1.ConditionFalse, reason: ReasonTrafficProblem, contains: `"a" steers it`,
			messageHas: `waiting for proxies to acknowledge weight 1% | traffic: the routes are not published as asked: rollout/b`,
			event:      true, wantRecheck: true,
		},
		"a rejection in force is shown": {
			report: &TrafficReport{Nacks: []string{"node-1 rejected shop/checkout: bad route"}},
			status: metav1.ConditionFalse, reason: ReasonProxiesRejected, contains: "node-1 rejected shop/checkout: bad route",
			messageHas: "proxies reject the published routes", event: true, wantRecheck: true,
		},
		"problems come before rejections, a few of each": {
			report: &TrafficReport{Problems: []string{"p1", "p2", "p3", "p4", "p5"}, Nacks: []string{"n1"}},
			status: metav1.ConditionFalse, reason: ReasonTrafficProblem, contains: "p1; p2; p3; and 2 more",
			event: true, wantRecheck: true,
		},
		"megabytes of problem text are bounded": {
			report: &TrafficReport{Problems: []string{huge, huge, huge, huge}},
			status: metav1.ConditionFalse, reason: ReasonTrafficProblem, contains: "bytes cut", event: true, wantRecheck: true,
		},
		"a clean report is ready": {
			report: &TrafficReport{}, status: metav1.ConditionTrue, reason: ReasonTrafficNoProblem,
			messageHas: "waiting for proxies to acknowledge weight 1%",
		},
		"no report leaves no condition": {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := Step(waiting(tc.report))
			c := meta.FindStatusCondition(r.Status.Conditions, v1alpha1.ConditionTrafficReady)
			if tc.report == nil {
				if c != nil {
					t.Fatalf("condition %+v without a report", c)
				}
				return
			}
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.contains) {
				t.Fatalf("condition %+v, want %s %s containing %q", c, tc.status, tc.reason, tc.contains)
			}
			if len(c.Message) > maxStatusMessage || len(r.Status.Message) > maxStatusMessage {
				t.Fatalf("condition message %d bytes, status.message %d bytes, bound %d", len(c.Message), len(r.Status.Message), maxStatusMessage)
			}
			if !strings.Contains(r.Status.Message, tc.messageHas) {
				t.Fatalf("status.message %q, want it to contain %q", r.Status.Message, tc.messageHas)
			}
			if got := hasEvent(r, tc.reason); got != tc.event {
				t.Fatalf("event %s: %v, want %v (events %+v)", tc.reason, got, tc.event, r.Events)
			}
			if tc.wantRecheck && (r.RequeueAfter == 0 || r.RequeueAfter > trafficRecheck) {
				t.Fatalf("requeue after %s, want at most %s", r.RequeueAfter, trafficRecheck)
			}
		})
	}
	if n := len(text.Truncate(huge, text.MaxMessage)); n > text.MaxMessage {
		t.Fatalf("truncate bound broken: %d", n)
	}
}

// TestTrafficProblemOnAConfirmedStep: a problem that arises while a step is
// held (its weight already confirmed) is in status.message too.
func TestTrafficProblemOnAConfirmedStep(t *testing.T) {
	o := Observed{Deployment: pausedFor("b"), Spec: testSpec(v1alpha1.ModeCanary), Canary: readyCanary("b", 1),
		Status: progressingAt(0, 100, at(0)), Now: t0, Traffic: &TrafficReport{Problems: []string{"service: bad port"}}}
	r := Step(o)
	if !strings.Contains(r.Status.Message, trafficSeparator+"the routes are not published as asked: service: bad port") {
		t.Fatalf("status.message %q does not carry the problem", r.Status.Message)
	}
	o.Status = r.Status
	o.Traffic = &TrafficReport{}
	if again := Step(o); strings.Contains(again.Status.Message, trafficSeparator) {
		t.Fatalf("status.message %q keeps the fixed problem", again.Status.Message)
	}
}

// TestUnconfirmedSaysWhy: a weight the traffic controller did not confirm
// shows what it still waits for, bounded, not only that it waits.
func TestUnconfirmedSaysWhy(t *testing.T) {
	o := Observed{Deployment: pausedFor("b"), Spec: testSpec(v1alpha1.ModeCanary), Canary: readyCanary("b", 1),
		Status: progressingAt(0, 100, nil), Now: t0,
		Unconfirmed: "service checkout.shop is published with canary weight 5%, still waiting for 1%" + strings.Repeat("!", 1<<20)}
	r := Step(o)
	if !strings.Contains(r.Status.Message, "waiting for proxies to acknowledge weight 1%: service checkout.shop is published with canary weight 5%") {
		t.Fatalf("status.message %q does not say what it waits for", r.Status.Message)
	}
	if len(r.Status.Message) > maxStatusMessage {
		t.Fatalf("status.message is %d bytes", len(r.Status.Message))
	}
}

// TestTrafficReadyClearsAndWarnsOnce: the condition clears once the problem
// is fixed, and a problem that stays is warned about once, not at every
// reconcile.
func TestTrafficReadyClearsAndWarnsOnce(t *testing.T) {
	o := Observed{Deployment: pausedFor("b"), Spec: testSpec(v1alpha1.ModeCanary), Canary: readyCanary("b", 1),
		Status: progressingAt(0, 100, nil), Now: t0, Traffic: &TrafficReport{Problems: []string{"service: bad"}}}
	first := Step(o)
	o.Status = first.Status
	second := Step(o)
	if hasEvent(second, ReasonTrafficProblem) {
		t.Fatalf("the same problem was warned about again: %+v", second.Events)
	}
	o.Status = second.Status
	o.Traffic = &TrafficReport{}
	fixed := Step(o)
	c := meta.FindStatusCondition(fixed.Status.Conditions, v1alpha1.ConditionTrafficReady)
	if c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("condition after the fix: %+v", c)
	}
	if strings.Contains(fixed.Status.Message, "not published") {
		t.Fatalf("status.message still names the problem: %q", fixed.Status.Message)
	}
}

func hasEvent(r Result, reason string) bool {
	for _, e := range r.Events {
		if e.Reason == reason {
			return true
		}
	}
	return false
}
