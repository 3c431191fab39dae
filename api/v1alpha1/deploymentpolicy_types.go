package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyMode says what happens to a Deployment that breaks a policy.
// +kubebuilder:validation:Enum=Enforce;Warn;Audit
type PolicyMode string

// Policy modes.
const (
	// ModeEnforce denies the request, listing every violation.
	ModeEnforce PolicyMode = "Enforce"
	// ModeWarn admits the request and returns admission warnings.
	ModeWarn PolicyMode = "Warn"
	// ModeAudit admits the request silently and counts the violations.
	ModeAudit PolicyMode = "Audit"
)

// DeploymentPolicy is a platform team's rules for the Deployments in the
// namespaces it selects, and the rollout defaults for those teams.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=dpol,categories=sluice
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Compiled",type=string,JSONPath=`.status.conditions[?(@.type=="Compiled")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DeploymentPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DeploymentPolicySpec   `json:"spec,omitempty"`
	Status DeploymentPolicyStatus `json:"status,omitempty"`
}

// DeploymentPolicySpec is what a DeploymentPolicy asks of Deployments.
type DeploymentPolicySpec struct {
	// NamespaceSelector picks the namespaces the policy applies to; empty or
	// absent selects every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// Mode is Enforce (deny), Warn (admit with warnings) or Audit (admit and count).
	// +kubebuilder:default=Enforce
	// +optional
	Mode PolicyMode `json:"mode,omitempty"`
	// Rules are the checks every selected Deployment must pass.
	// +optional
	Rules PolicyRules `json:"rules,omitempty"`
	// Exceptions exempt matching Deployments until they expire.
	// +optional
	Exceptions []PolicyException `json:"exceptions,omitempty"`
	// EmergencyBypass lets the members of some groups admit a Deployment
	// despite this policy's violations, for a limited time, by annotating it
	// sluice.dev/emergency-bypass: "<reason>" and
	// sluice.dev/emergency-bypass-expires: "<RFC 3339 time>". Every use is
	// recorded with who made the request. Absent, the policy cannot be
	// bypassed.
	// +optional
	EmergencyBypass *EmergencyBypass `json:"emergencyBypass,omitempty"`
	// InjectLabels are added to the Deployment and its pod template.
	// +optional
	InjectLabels map[string]string `json:"injectLabels,omitempty"`
	// RolloutDefaults apply where a Deployment's annotations are silent.
	// +optional
	RolloutDefaults *RolloutDefaults `json:"rolloutDefaults,omitempty"`
	// Notifications lets the selected namespaces send rollout notifications
	// to webhook receivers that this policy allows.
	// +optional
	Notifications *Notifications `json:"notifications,omitempty"`
}

// Notifications says where the namespaces a policy selects may send their
// rollout notifications (started, step, held, rolled back, promoted). Each
// namespace names its receiver in a Secret of its own; Sluice posts only to
// URLs that start with an allowed prefix, and follows no redirect.
type Notifications struct {
	// AllowedURLPrefixes are the URL prefixes a namespace's receiver may
	// start with, e.g. "https://hooks.slack.com/services/". A URL that
	// starts with none of them is refused.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MinLength=8
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^https?://[^/?#]+/`
	AllowedURLPrefixes []string `json:"allowedURLPrefixes"`
	// SecretName is the Secret in each selected namespace that holds the
	// receiver: key "url", and optionally key "format", "json" (default) or
	// "slack". Default "sluice-notifications".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`
}

// NotificationSecretDefault is the Secret a namespace's notification
// receiver is read from when the policy names none.
const NotificationSecretDefault = "sluice-notifications"

// PolicyRules are the built-in and CEL checks of a policy. Every rule is off
// until set.
type PolicyRules struct {
	// RequiredLabels must be present, non-empty, on the Deployment.
	// +optional
	RequiredLabels []string `json:"requiredLabels,omitempty"`
	// AllowedRegistries are image prefixes such as "registry.example.com/" or
	// "ghcr.io/acme/"; every container image must start with one of them.
	// +optional
	AllowedRegistries []string `json:"allowedRegistries,omitempty"`
	// DisallowLatestTag rejects images tagged :latest and images with neither
	// a tag nor a digest.
	// +optional
	DisallowLatestTag bool `json:"disallowLatestTag,omitempty"`
	// RequireResources needs CPU and memory requests and limits on every container.
	// +optional
	RequireResources bool `json:"requireResources,omitempty"`
	// RequireReadinessProbe needs a readiness probe on every container.
	// +optional
	RequireReadinessProbe bool `json:"requireReadinessProbe,omitempty"`
	// Replicas bounds spec.replicas.
	// +optional
	Replicas *ReplicaBounds `json:"replicas,omitempty"`
	// RequireRollout needs the sluice.dev/rollout annotation to name one of
	// these modes (off is never accepted here).
	// +optional
	RequireRollout []DeliveryMode `json:"requireRollout,omitempty"`
	// FreezeWindows are times when changes to Deployments are refused.
	// +optional
	FreezeWindows []FreezeWindow `json:"freezeWindows,omitempty"`
	// RolloutBounds limit how aggressive a canary may be.
	// +optional
	RolloutBounds *RolloutBounds `json:"rolloutBounds,omitempty"`
	// CEL rules over the Deployment (object) and its Namespace (namespaceObject).
	// +optional
	CEL []CELRule `json:"cel,omitempty"`
}

// ReplicaBounds bound spec.replicas; an absent spec.replicas counts as 1.
type ReplicaBounds struct {
	// Min is the fewest replicas allowed.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Min *int32 `json:"min,omitempty"`
	// Max is the most replicas allowed.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Max *int32 `json:"max,omitempty"`
}

// Weekday is a day of the week in English, e.g. Friday.
// +kubebuilder:validation:Enum=Monday;Tuesday;Wednesday;Thursday;Friday;Saturday;Sunday
type Weekday string

// WeekTime is a wall-clock time on a day of the week.
type WeekTime struct {
	// Day of the week, e.g. Friday.
	Day Weekday `json:"day"`
	// Time of day as HH:MM on a 24-hour clock, e.g. "16:00".
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Time string `json:"time"`
}

// WeeklyWindow recurs every week from From to To; it wraps the week when To
// comes before From (Friday 16:00 to Monday 08:00).
type WeeklyWindow struct {
	// From is when the window opens.
	From WeekTime `json:"from"`
	// To is when the window closes.
	To WeekTime `json:"to"`
}

// DateRange is a one-off window between two wall-clock times, written
// "2006-01-02T15:04" in the window's time zone.
type DateRange struct {
	// From is when the window opens, e.g. "2026-12-23T18:00".
	From string `json:"from"`
	// To is when the window closes, e.g. "2027-01-04T08:00".
	To string `json:"to"`
}

// FreezeWindow is a period when changes are refused, weekly or one-off, in
// an IANA time zone. Exactly one of Weekly and Dates is set.
type FreezeWindow struct {
	// Name identifies the window in messages.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// TimeZone is an IANA zone name such as Europe/Berlin; the wall-clock
	// times are read in it, so windows follow daylight saving time.
	// +kubebuilder:validation:MinLength=1
	TimeZone string `json:"timeZone"`
	// Weekly is a recurring window.
	// +optional
	Weekly *WeeklyWindow `json:"weekly,omitempty"`
	// Dates is a one-off window.
	// +optional
	Dates *DateRange `json:"dates,omitempty"`
	// Reason is shown in violation messages, e.g. "weekend freeze".
	// +optional
	Reason string `json:"reason,omitempty"`
}

// RolloutBounds limit the resolved delivery of opted-in Deployments.
type RolloutBounds struct {
	// MaxFirstStep is the largest allowed first canary weight, in percent, e.g. "5".
	// +optional
	MaxFirstStep string `json:"maxFirstStep,omitempty"`
	// MinSteps is the fewest canary steps allowed.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinSteps *int32 `json:"minSteps,omitempty"`
	// MaxErrorRate is the loosest allowed error-rate ceiling, e.g. "2%".
	// +optional
	MaxErrorRate string `json:"maxErrorRate,omitempty"`
}

// CELRule is a boolean CEL expression over `object` (the Deployment) and
// `namespaceObject` (its Namespace); false is a violation.
type CELRule struct {
	// Name identifies the rule in violations and metrics; unique in the policy.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Expression must evaluate to a bool, e.g. `object.spec.replicas >= 2`.
	// +kubebuilder:validation:MinLength=1
	Expression string `json:"expression"`
	// Message is shown when the expression is false.
	// +kubebuilder:validation:MinLength=1
	Message string `json:"message"`
}

// EmergencyBypass says who may bypass a policy and for how long.
type EmergencyBypass struct {
	// Groups are the Kubernetes groups (as the API server authenticates the
	// request's user) whose members may bypass the policy, e.g. "sre-oncall".
	// A request by anyone else that carries the bypass annotations is judged
	// as if it had none, and is told why.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:items:MinLength=1
	Groups []string `json:"groups"`
	// MaxDuration bounds how far ahead of the request the bypass's expiry
	// may lie; default 24h.
	// +optional
	MaxDuration *metav1.Duration `json:"maxDuration,omitempty"`
}

// DefaultBypassMaxDuration is EmergencyBypass.MaxDuration when unset.
const DefaultBypassMaxDuration = 24 * time.Hour

// PolicyException exempts Deployments that match every field set in it, until
// it expires. At least one of Namespace, Name and Selector is set, and
// Namespace is set whenever Name or Selector is: an exception never reaches
// into namespaces it does not name.
// +kubebuilder:validation:XValidation:rule="!(has(self.name) || has(self.selector)) || has(self.namespace)",message="namespace is required when name or selector is set"
type PolicyException struct {
	// Namespace matches the Deployment's namespace.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name matches the Deployment's name.
	// +optional
	Name string `json:"name,omitempty"`
	// Selector matches the Deployment's labels.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Rules limits the exception to these rule names; empty exempts from all.
	// +optional
	Rules []string `json:"rules,omitempty"`
	// Expires is when the exception stops applying.
	Expires metav1.Time `json:"expires"`
	// Reason says why the exception exists.
	// +kubebuilder:validation:MinLength=1
	Reason string `json:"reason"`
}

// RolloutDefaults are a team's delivery defaults, written in the annotation
// syntax: steps "1,5,25,50", maxErrorRate "1%".
type RolloutDefaults struct {
	// Steps are canary weights in percent, e.g. "1,5,25,50".
	// +optional
	Steps string `json:"steps,omitempty"`
	// StepInterval is the time held and analysed at each step, at least 1s.
	// +optional
	StepInterval *metav1.Duration `json:"stepInterval,omitempty"`
	// MaxErrorRate is the canary's error-rate ceiling, e.g. "1%" or "0.01".
	// +optional
	MaxErrorRate string `json:"maxErrorRate,omitempty"`
	// MaxLatencyP99 is the canary's p99 latency ceiling.
	// +optional
	MaxLatencyP99 *metav1.Duration `json:"maxLatencyP99,omitempty"`
	// Analysis tunes metric analysis.
	// +optional
	Analysis *AnalysisDefaults `json:"analysis,omitempty"`
}

// AnalysisDefaults tune metric analysis; unset fields keep built-in defaults.
type AnalysisDefaults struct {
	// Confidence a failing verdict needs, e.g. "95%" or "0.95".
	// +optional
	Confidence string `json:"confidence,omitempty"`
	// MinSamples is the fewest requests a step needs before a verdict.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinSamples *int32 `json:"minSamples,omitempty"`
	// NoData is Hold, Fail or Pass.
	// +optional
	NoData NoDataPolicy `json:"noData,omitempty"`
	// CriticalErrorRate rolls back at once, e.g. "20%".
	// +optional
	CriticalErrorRate string `json:"criticalErrorRate,omitempty"`
	// Queries are custom Prometheus metrics.
	// +optional
	// +listType=map
	// +listMapKey=name
	Queries []MetricQuery `json:"queries,omitempty"`
}

// Condition types of a DeploymentPolicy.
const (
	// ConditionCompiled is True when every rule compiled; False carries the error.
	ConditionCompiled = "Compiled"
)

// DeploymentPolicyStatus is what Sluice observed of a policy.
type DeploymentPolicyStatus struct {
	// Conditions include Compiled.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Violations count violations by rule and mode since the controller started.
	// +optional
	Violations []ViolationCount `json:"violations,omitempty"`
}

// ViolationCount is how often a rule was broken in a mode.
type ViolationCount struct {
	// Rule is the built-in rule name or the CEL rule name.
	Rule string `json:"rule"`
	// Mode the violation was handled in.
	Mode PolicyMode `json:"mode"`
	// Count of violations.
	Count int64 `json:"count"`
}

// DeploymentPolicyList is a list of DeploymentPolicy.
//
// +kubebuilder:object:root=true
type DeploymentPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeploymentPolicy `json:"items"`
}
