package webhook

import (
	"fmt"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// Event reasons on Deployments.
const (
	// ReasonPolicyAudit: the Deployment was admitted with violations of
	// Audit-mode policies.
	ReasonPolicyAudit = "PolicyAudit"
	// ReasonEmergencyBypass: the Deployment was admitted despite policy
	// violations under an allowed emergency bypass.
	ReasonEmergencyBypass = "EmergencyBypass"
)

// maxEventNote is the longest Event note kube-apiserver accepts (1 KiB).
const maxEventNote = 1024

// auditEmergencyBypass is the audit annotation key of an admitted emergency
// bypass; kube-apiserver prefixes it with the webhook's name.
const auditEmergencyBypass = "emergency-bypass"

// maxAuditAnnotation bounds an audit annotation value Sluice writes.
const maxAuditAnnotation = 1024

// auditor records what admission must report but must not wait for:
// violation counts for policy status, and Events. The events recorder
// queues and sends asynchronously, so nothing here calls the API server.
type auditor struct {
	recorder events.EventRecorder

	mu      sync.Mutex
	pending map[string][]v1alpha1.ViolationCount
}

func newAuditor(recorder events.EventRecorder) *auditor {
	return &auditor{recorder: recorder, pending: map[string][]v1alpha1.ViolationCount{}}
}

// record counts r's violations for status and emits the audit Events for d.
func (a *auditor) record(d *appsv1.Deployment, r policies.Result) {
	touched := map[string]bool{}
	for _, v := range r.Violations {
		touched[v.Policy] = true
	}
	for _, v := range r.Bypassed {
		touched[v.Policy] = true
	}
	if len(touched) > 0 {
		a.mu.Lock()
		for p := range touched {
			a.pending[p] = policies.Tally(a.pending[p], p, r)
		}
		a.mu.Unlock()
	}
	if a.recorder == nil {
		return
	}
	if audit := r.ByMode(v1alpha1.ModeAudit); len(audit) > 0 {
		a.recorder.Eventf(d, nil, corev1.EventTypeWarning, ReasonPolicyAudit, "Admit",
			"%s", note(fmt.Sprintf("admitted with %d Audit-mode policy violation(s)", len(audit)), audit))
	}
	if len(r.Bypassed) > 0 {
		a.recorder.Eventf(d, nil, corev1.EventTypeWarning, ReasonEmergencyBypass, "Admit",
			"%s", note(r.BypassSummary(), r.Bypassed))
	}
}

// note joins a headline and violations into an Event note of at most
// maxEventNote bytes.
func note(headline string, vs []policies.Violation) string {
	var b strings.Builder
	b.WriteString(headline)
	for _, v := range vs {
		b.WriteString("; ")
		b.WriteString(v.String())
	}
	return policies.Truncate(b.String(), maxEventNote)
}

// take returns the counts gathered since the last take, by policy name.
func (a *auditor) take() map[string][]v1alpha1.ViolationCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.pending
	a.pending = map[string][]v1alpha1.ViolationCount{}
	return out
}

// giveBack returns counts that could not be written, for the next attempt.
func (a *auditor) giveBack(policy string, counts []v1alpha1.ViolationCount) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending[policy] = policies.AddCounts(a.pending[policy], counts)
}
