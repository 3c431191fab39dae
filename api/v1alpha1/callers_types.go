package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// MaxCallers bounds status.callers.callers: the namespaces that sent the
// most requests, then one entry named CallersOther for the rest.
const MaxCallers = 16

// CallersOther names the entry that folds the callers beyond MaxCallers,
// and the identities the load-report server folded itself. It is not a
// valid namespace name, so it cannot be mistaken for one.
const CallersOther = "(other)"

// CallersUnidentified names load reported by streams without an identity
// (xDS authentication not configured). Not a valid namespace name.
const CallersUnidentified = "(unidentified)"

// CallerStatus is the load each calling namespace sent the service, from the
// load reports of the callers' own xDS clients (grouped by the namespace of
// the identity that reported). The leader writes it every
// CallerStatus.Window; the counts are cumulative since Since.
type CallerStatus struct {
	// Since is when the counting began (the leader's first look at this
	// service); counts before it, or kept by a previous leader, are not in
	// them.
	Since metav1.Time `json:"since"`
	// UpdatedAt is when the counts were written.
	UpdatedAt metav1.Time `json:"updatedAt"`
	// Window is the span the Recent counts cover, ending at UpdatedAt.
	// +optional
	Window metav1.Duration `json:"window,omitempty"`
	// Callers are the calling namespaces, most requests first, at most
	// MaxCallers; the last may be CallersOther.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Callers []CallerLoad `json:"callers,omitempty"`
}

// CallerLoad is one calling namespace's load on the service.
type CallerLoad struct {
	// Namespace of the calling clients' identity, CallersOther or
	// CallersUnidentified.
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Legacy is true when some of this load came through the plaintext
	// legacy listener (its namespace is the client's claim, bound to the
	// namespace's opt-in, not proven).
	// +optional
	Legacy bool `json:"legacy,omitempty"`
	// Requests and Errors are completed requests and those that failed, on
	// every track, since Since.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// RecentRequests and RecentErrors are the part of them within Window.
	// +optional
	RecentRequests int64 `json:"recentRequests,omitempty"`
	// +optional
	RecentErrors int64 `json:"recentErrors,omitempty"`
	// CanaryRequests and CanaryErrors were served by the canary revision
	// (status.canaryRevision) during its delivery: which callers reached
	// the new version and how it went for them.
	// +optional
	CanaryRequests int64 `json:"canaryRequests,omitempty"`
	// +optional
	CanaryErrors int64 `json:"canaryErrors,omitempty"`
}
