package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RolloutPhase is where a Rollout is in its delivery.
// +kubebuilder:validation:Enum=Idle;Progressing;Paused;Promoting;Succeeded;RolledBack
type RolloutPhase string

// Rollout phases.
const (
	// PhaseIdle: no canary; the stable version serves everything.
	PhaseIdle RolloutPhase = "Idle"
	// PhaseProgressing: a canary is taking traffic step by step under analysis.
	PhaseProgressing RolloutPhase = "Progressing"
	// PhasePaused: a user paused the rollout; weights hold.
	PhasePaused RolloutPhase = "Paused"
	// PhasePromoting: the Deployment rolls to the new revision and the canary drains.
	PhasePromoting RolloutPhase = "Promoting"
	// PhaseSucceeded: the new revision is stable.
	PhaseSucceeded RolloutPhase = "Succeeded"
	// PhaseRolledBack: the canary failed and was removed; the old revision serves.
	PhaseRolledBack RolloutPhase = "RolledBack"
)

// Active reports whether the phase has a canary in flight whose traffic
// Sluice steers (Progressing, Paused, Promoting): the Rollout's strategy is
// published and its weights are confirmed with the proxies. In every other
// phase all traffic goes to stable.
func (p RolloutPhase) Active() bool {
	return p == PhaseProgressing || p == PhasePaused || p == PhasePromoting
}

// Verdict is the outcome of one analysis of one metric.
// +kubebuilder:validation:Enum=Pass;Fail;Inconclusive
type Verdict string

// Analysis verdicts.
const (
	// VerdictPass: the metric is healthy.
	VerdictPass Verdict = "Pass"
	// VerdictFail: the metric breaks its threshold with enough confidence.
	VerdictFail Verdict = "Fail"
	// VerdictInconclusive: too few samples to judge.
	VerdictInconclusive Verdict = "Inconclusive"
)

// Rollout is the live state of one opted-in Deployment's delivery. It has the
// Deployment's name and namespace and is created and owned by Sluice.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=ro,categories=sluice
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Weight",type=string,JSONPath=`.status.currentWeightPercent`
// +kubebuilder:printcolumn:name="Step",type=integer,JSONPath=`.status.currentStepIndex`
// +kubebuilder:printcolumn:name="Stable",type=string,JSONPath=`.status.stableRevision`
// +kubebuilder:printcolumn:name="Canary",type=string,JSONPath=`.status.canaryRevision`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RolloutSpec   `json:"spec,omitempty"`
	Status RolloutStatus `json:"status,omitempty"`
}

// RolloutSpec is the resolved delivery configuration plus the actions users
// request.
type RolloutSpec struct {
	// Delivery is resolved from the Deployment's annotations, the team's
	// policy defaults and the built-in defaults.
	Delivery Delivery `json:"delivery"`
	// Paused holds the current weights until cleared.
	// +optional
	Paused bool `json:"paused,omitempty"`
	// Promote asks to promote the canary revision it names now, skipping the
	// remaining steps. A request naming another revision is ignored.
	// +optional
	Promote *RolloutAction `json:"promote,omitempty"`
	// Abort asks to roll back the canary revision it names now.
	// +optional
	Abort *RolloutAction `json:"abort,omitempty"`
	// RetryRevision allows a revision that failed before to be tried again.
	// +optional
	RetryRevision string `json:"retryRevision,omitempty"`
}

// RolloutAction is a user's request bound to one canary revision, so a stale
// request never applies to a later revision.
type RolloutAction struct {
	// Revision is the canary revision the action targets.
	// +kubebuilder:validation:MinLength=1
	Revision string `json:"revision"`
	// RequestedAt is when the action was requested.
	// +optional
	RequestedAt metav1.Time `json:"requestedAt,omitempty"`
	// RequestedBy names who requested it.
	// +optional
	RequestedBy string `json:"requestedBy,omitempty"`
	// Reason says why.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// FailedRevision records a revision that was rolled back; it is not tried
// again until spec.retryRevision names it.
type FailedRevision struct {
	// Revision is the pod template hash.
	Revision string `json:"revision"`
	// Reason says why it was rolled back.
	Reason string `json:"reason"`
	// Time of the rollback.
	Time metav1.Time `json:"time"`
}

// ProxyStatus summarises the proxies serving this rollout's routes.
type ProxyStatus struct {
	// Acked counts proxies that acknowledged the current configuration.
	// +optional
	Acked int32 `json:"acked"`
	// Nacked counts proxies that rejected it and keep their last good one.
	// +optional
	Nacked int32 `json:"nacked"`
	// LastNack is the error message of the most recent rejection.
	// +optional
	LastNack string `json:"lastNack,omitempty"`
	// LastNackTime is when it happened.
	// +optional
	LastNackTime *metav1.Time `json:"lastNackTime,omitempty"`
	// Stale counts connected proxies that left the routes unanswered for
	// longer than the stale bound (a hung process, a half-open connection):
	// the step did not wait for them.
	// +optional
	Stale int32 `json:"stale,omitempty"`
	// StaleNodes names some of them (at most MaxStaleNodes), sorted.
	// +optional
	StaleNodes []string `json:"staleNodes,omitempty"`
	// Replicas breaks the counts down by the Sluice replica the proxies are
	// connected to (at most MaxReplicaProxies, by name).
	// +optional
	// +listType=map
	// +listMapKey=replica
	Replicas []ReplicaProxies `json:"replicas,omitempty"`
	// Limits says which proxies cannot follow part of the strategy (an
	// older client that cannot express a cohort match or a sticky split,
	// say) and what they get instead, as "<n> proxies: <what>": at most
	// MaxProxyLimits lines of at most 512 bytes. Such proxies send those
	// requests to the stable version; they never fail them.
	// +optional
	Limits []string `json:"limits,omitempty"`
}

// ReplicaProxies counts the proxies connected to one Sluice replica.
type ReplicaProxies struct {
	// Replica is the replica's name (--replica-name, its pod name) or, for
	// one that could not be asked, its address.
	Replica string `json:"replica"`
	// Acked, Nacked and Stale count its proxies as ProxyStatus does.
	// +optional
	Acked int32 `json:"acked"`
	// +optional
	Nacked int32 `json:"nacked"`
	// +optional
	Stale int32 `json:"stale,omitempty"`
}

// MaxStaleNodes is how many stale proxies status.proxies.staleNodes names.
const MaxStaleNodes = 10

// MaxReplicaProxies is how many replicas status.proxies.replicas lists.
const MaxReplicaProxies = 16

// MaxProxyLimits is how many lines status.proxies.limits holds.
const MaxProxyLimits = 5

// AnalysisDecision is one verdict on one metric.
type AnalysisDecision struct {
	// Metric is "error-rate", "latency-p99" or a custom query's name.
	Metric string `json:"metric"`
	// Value observed, as a decimal string.
	Value string `json:"value"`
	// Threshold it was compared with, as a decimal string.
	Threshold string `json:"threshold"`
	// Samples is the number of requests behind the value.
	Samples int64 `json:"samples"`
	// Verdict is Pass, Fail or Inconclusive.
	Verdict Verdict `json:"verdict"`
	// Step is the step index analysed.
	// +optional
	Step int32 `json:"step"`
	// Time of the decision.
	Time metav1.Time `json:"time"`
}

// MaxAnalysisDecisions is how many recent decisions status.analysis keeps.
const MaxAnalysisDecisions = 10

// AnalysisSources says where the load behind the last analysis came from and
// how much of it could promote the canary. Only load from authenticated
// reporters is promotion evidence, and no identity counts for more than all
// the others together; every report, legacy included, counts for holding and
// rolling back.
type AnalysisSources struct {
	// Canary describes the canary track's sample since the canary began.
	Canary TrackSources `json:"canary"`
	// Stable describes the stable track's sample over the same span.
	Stable TrackSources `json:"stable"`
	// Message says in a sentence what limits the evidence, e.g. "one
	// identity (token:web/frontend) supplied 100% of the canary's
	// authenticated sample".
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// MaxSourcesMessage bounds AnalysisSources.Message, in bytes.
const MaxSourcesMessage = 1024

// TrackSources describes one track's sample by origin.
type TrackSources struct {
	// Requests is the whole sample: every report that counted.
	Requests int64 `json:"requests"`
	// LegacyRequests came through the plaintext legacy listener: they hold
	// and roll back, never promote.
	// +optional
	LegacyRequests int64 `json:"legacyRequests,omitempty"`
	// LegacyPercent is LegacyRequests as a share of Requests, e.g. "12%".
	// +optional
	// +kubebuilder:validation:MaxLength=16
	LegacyPercent string `json:"legacyPercent,omitempty"`
	// Identities is the number of authenticated identities that reported.
	// +optional
	Identities int32 `json:"identities,omitempty"`
	// TopIdentity reported the most authenticated requests, e.g.
	// "token:web/frontend"; TopPercent is its share of them.
	// +optional
	// +kubebuilder:validation:MaxLength=330
	TopIdentity string `json:"topIdentity,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=16
	TopPercent string `json:"topPercent,omitempty"`
	// EvidenceRequests is what counts as promotion evidence after the share
	// bound.
	EvidenceRequests int64 `json:"evidenceRequests"`
}

// AnalysisCounts are the cumulative counts of one canary revision's
// analysis, persisted so that they survive a restart of every replica.
type AnalysisCounts struct {
	// Revision is the canary revision counted.
	Revision string `json:"revision"`
	// Since is the revision's start (status.canaryStartedAt) the counts run
	// from; counts of an earlier delivery of the same revision never carry
	// over.
	Since metav1.Time `json:"since"`
	// Canary is what the canary's pods of Revision served since Since.
	Canary RequestCounts `json:"canary"`
	// Stable is what the stable track served over the same span.
	Stable RequestCounts `json:"stable"`
	// Sources holds, per controller incarnation whose load reports counted,
	// the raw counter readings behind Canary and Stable: each is the sum over
	// the sources of seen - base. At most MaxCountSources.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Sources []CountSource `json:"sources,omitempty"`
}

// MaxCountSources bounds AnalysisCounts.Sources.
const MaxCountSources = 16

// FoldedCountSource names the entry into which sources beyond
// MaxCountSources are folded; its counts are carried as they are.
const FoldedCountSource = "(folded)"

// RequestCounts are requests completed and how many of them failed.
type RequestCounts struct {
	// Requests completed.
	Requests int64 `json:"requests"`
	// Errors among them.
	Errors int64 `json:"errors"`
}

// CountSource is one controller incarnation's counters for a revision: the
// replica's name and start, as its load reports are forwarded. Its counters
// only grow, so two readings of it merge by taking the larger.
type CountSource struct {
	// Name of the incarnation, e.g. "sluice-0-1733234567000000000".
	// +kubebuilder:validation:MaxLength=320
	Name string `json:"name"`
	// CanaryBase is the canary counter when the revision began; CanarySeen
	// its largest reading since.
	CanaryBase RequestCounts `json:"canaryBase"`
	CanarySeen RequestCounts `json:"canarySeen"`
	// StableBase and StableSeen are the same for the stable track.
	StableBase RequestCounts `json:"stableBase"`
	StableSeen RequestCounts `json:"stableSeen"`
}

// Condition types of a Rollout.
const (
	// ConditionAvailable is True while the stable version serves.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while a canary is under way.
	ConditionProgressing = "Progressing"
	// ConditionConfigApplied is True when every proxy acknowledged the routes.
	ConditionConfigApplied = "ConfigApplied"
	// ConditionTrafficReady is False while the traffic side cannot publish
	// the service's routes as its objects ask (reason TrafficProblem) or a
	// proxy rejects what is published (reason ProxiesRejected), with the
	// reasons in its message; True otherwise.
	ConditionTrafficReady = "TrafficReady"
)

// RolloutStatus is the observed state of a delivery.
type RolloutStatus struct {
	// Phase is Idle, Progressing, Paused, Promoting, Succeeded or RolledBack.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`
	// StableRevision serves by default.
	// +optional
	StableRevision string `json:"stableRevision,omitempty"`
	// CanaryRevision is the revision under delivery, if any.
	// +optional
	CanaryRevision string `json:"canaryRevision,omitempty"`
	// CanaryStartedAt is when delivery of CanaryRevision began: the origin
	// of its analysis. Only requests served by that revision's pods since
	// then count for it, so a replaced or rolled-back revision's requests,
	// however late they are reported, never count for the next.
	// +optional
	CanaryStartedAt *metav1.Time `json:"canaryStartedAt,omitempty"`
	// CurrentStepIndex indexes spec.delivery.steps; it equals the number of
	// steps once all passed.
	// +optional
	CurrentStepIndex int32 `json:"currentStepIndex"`
	// CurrentWeight is the canary's share of traffic in basis points
	// (10000 = 100%) that the proxies are told to carry; stepStartedAt is set
	// once every proxy acknowledged it.
	// +optional
	CurrentWeight BasisPoints `json:"currentWeight"`
	// StepStartedAt is when the proxies confirmed CurrentWeight; the step's
	// interval and its cumulative analysis window run from here. Unset while
	// the weight awaits confirmation.
	// +optional
	StepStartedAt *metav1.Time `json:"stepStartedAt,omitempty"`
	// ReleasedAt is when a promote released a beta cohort hold into weighted
	// steps; a later promote skips the remaining steps.
	// +optional
	ReleasedAt *metav1.Time `json:"releasedAt,omitempty"`
	// AnalysisFailures counts analyses in a row in which a check failed.
	// +optional
	AnalysisFailures int32 `json:"analysisFailures,omitempty"`
	// LastAnalysisTime is the time of the last analysis that updated
	// AnalysisFailures; a replay at or before it is not counted again.
	// +optional
	LastAnalysisTime *metav1.Time `json:"lastAnalysisTime,omitempty"`
	// CurrentWeightPercent is CurrentWeight for display, e.g. "2.5%"; written
	// together with it.
	// +optional
	CurrentWeightPercent string `json:"currentWeightPercent,omitempty"`
	// FailedRevisions are revisions rolled back, newest last.
	// +optional
	FailedRevisions []FailedRevision `json:"failedRevisions,omitempty"`
	// Proxies summarises acknowledgements of the current routes.
	// +optional
	Proxies ProxyStatus `json:"proxies,omitempty"`
	// Analysis holds the last MaxAnalysisDecisions decisions, newest last.
	// +optional
	// +kubebuilder:validation:MaxItems=10
	Analysis []AnalysisDecision `json:"analysis,omitempty"`
	// Sources says where the load behind the last analysis came from: the
	// share reported through the legacy listener, and whether one identity
	// dominates the sample. Unset when the metric source cannot tell
	// reporters apart (Prometheus).
	// +optional
	Sources *AnalysisSources `json:"sources,omitempty"`
	// Counts holds the request and error counts the last analysis judged,
	// since the canary revision began, and per controller incarnation the
	// counter readings they come from. A restarted or new leader resumes from
	// them, so a restart neither starts the sequential tests over (spending
	// their error budget again) nor counts a request twice. Unset when the
	// metric source keeps its own history (Prometheus).
	// +optional
	Counts *AnalysisCounts `json:"counts,omitempty"`
	// Callers says which namespaces call the service and how their
	// requests fare, from their own load reports (bounded; see
	// CallerStatus).
	// +optional
	Callers *CallerStatus `json:"callers,omitempty"`
	// Conditions include Available, Progressing, ConfigApplied and
	// TrafficReady.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Message says in a sentence what is happening and why.
	// +optional
	Message string `json:"message,omitempty"`
}

// RolloutList is a list of Rollout.
//
// +kubebuilder:object:root=true
type RolloutList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Rollout `json:"items"`
}
