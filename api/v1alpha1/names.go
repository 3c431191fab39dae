package v1alpha1

// Labels that Sluice writes on Deployments and their pod templates. Users never
// write them by hand; the mutating webhook owns them.
const (
	// LabelTeam names the owning team, copied from the namespace label of the
	// same name.
	LabelTeam = "sluice.dev/team"
	// LabelService names the logical service: the sluice.dev/service annotation,
	// else the Deployment's name.
	LabelService = "sluice.dev/service"
	// LabelTrack is TrackStable or TrackCanary.
	LabelTrack = "sluice.dev/track"
	// LabelRevision is a short content hash of the pod template, computed
	// without Sluice's own labels.
	LabelRevision = "sluice.dev/revision"
)

// Values of LabelTrack.
const (
	// TrackStable marks the version that currently serves by default.
	TrackStable = "stable"
	// TrackCanary marks the new version under analysis.
	TrackCanary = "canary"
)

// Annotations that teams write on a Deployment.
const (
	// AnnotationRollout selects the delivery mode: canary, beta, ab or off.
	AnnotationRollout = "sluice.dev/rollout"
	// AnnotationService names the logical service (a DNS-1035 label).
	AnnotationService = "sluice.dev/service"
	// AnnotationSteps lists canary weights in percent, e.g. "1,5,25,50".
	AnnotationSteps = "sluice.dev/steps"
	// AnnotationStepInterval is the time held and analysed at each step, e.g. "30s".
	AnnotationStepInterval = "sluice.dev/step-interval"
	// AnnotationMaxErrorRate is the ceiling on the canary's error rate, e.g. "1%".
	AnnotationMaxErrorRate = "sluice.dev/max-error-rate"
	// AnnotationMaxLatencyP99 is the ceiling on the canary's p99 latency, e.g. "300ms".
	AnnotationMaxLatencyP99 = "sluice.dev/max-latency-p99"
	// AnnotationCohort selects requests that always reach the new version,
	// e.g. "header:x-cohort=beta" or "cookie:beta=1".
	AnnotationCohort = "sluice.dev/cohort"
	// AnnotationSticky names the user key for sticky splits, e.g. "header:x-user-id".
	AnnotationSticky = "sluice.dev/sticky"
	// AnnotationSplit is the share of users on the new version in ab mode, e.g. "50".
	AnnotationSplit = "sluice.dev/split"
	// AnnotationEmergencyBypass, with a non-empty reason as its value, asks to
	// admit despite policy violations; honoured only for the groups a policy
	// names, until AnnotationEmergencyBypassExpires, and audited.
	AnnotationEmergencyBypass = "sluice.dev/emergency-bypass"
	// AnnotationEmergencyBypassExpires is when an emergency bypass ends, as
	// an RFC 3339 time, e.g. "2026-12-03T18:00:00Z". Required with
	// AnnotationEmergencyBypass.
	AnnotationEmergencyBypassExpires = "sluice.dev/emergency-bypass-expires"
	// AnnotationConsumers lists the namespaces, besides its own, whose
	// proxies may see and call the service over xDS: comma-separated
	// namespaces, or "*" for every namespace. Absent: its own namespace only.
	AnnotationConsumers = "sluice.dev/consumers"
)

// Annotations that Sluice writes on a team's Deployment.
const (
	// AnnotationPendingRevision is written by the mutating webhook when it
	// pauses an opted-in Deployment whose pod template revision changed: the
	// revision waiting for its canary. The rollout controller reads it and
	// clears it when it resumes the Deployment.
	AnnotationPendingRevision = "sluice.dev/pending-revision"
)

// DeliveryAnnotations lists every annotation that ParseDelivery reads, in a
// stable order.
var DeliveryAnnotations = []string{
	AnnotationRollout,
	AnnotationService,
	AnnotationSteps,
	AnnotationStepInterval,
	AnnotationMaxErrorRate,
	AnnotationMaxLatencyP99,
	AnnotationCohort,
	AnnotationSticky,
	AnnotationSplit,
}
