package rollout

import (
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// RecentWindow is the trailing window behind the analysis' critical tier and
// ceilings: a sudden fault shows up in it within seconds.
const RecentWindow = 10 * time.Second

// AnalysisInterval is how often a rollout carrying canary traffic is analysed.
const AnalysisInterval = time.Second

// maxFailedRevisions bounds status.failedRevisions; the oldest go first.
const maxFailedRevisions = 20

// DeploymentView is what the machine needs of the team's Deployment.
type DeploymentView struct {
	// TemplateRevision is the pod template's sluice.dev/revision label.
	TemplateRevision string
	// PendingRevision is the sluice.dev/pending-revision annotation: the
	// revision the webhook paused the Deployment for, empty when none.
	PendingRevision string
	// Paused is spec.paused.
	Paused bool
	// Replicas is spec.replicas (1 when unset).
	Replicas int32
	// RolledOut is true when the Deployment controller has observed the
	// current generation and every replica is updated and available.
	RolledOut bool
}

// CanaryView is what the machine needs of the canary Deployment.
type CanaryView struct {
	// Revision is the canary's pod template sluice.dev/revision label.
	Revision string
	// Replicas is spec.replicas.
	Replicas int32
	// ReadyReplicas counts ready pods of the canary's current template.
	ReadyReplicas int32
}

// Confirmation is what the proxies said about one published weight.
type Confirmation struct {
	// Acked counts proxies that acknowledged routes carrying the weight.
	Acked int
	// Nacked counts proxies that rejected the routes.
	Nacked int
	// NackMessages are the rejections' error details.
	NackMessages []string
	// Stale names the proxies not waited for: they left the routes
	// unanswered for longer than the stale bound.
	Stale []string
	// Replicas counts the proxies by the Sluice replica they connect to.
	Replicas []v1alpha1.ReplicaProxies
	// Limits says which proxies cannot follow part of the strategy.
	Limits []string
	// Holding describes, for weight 0, the proxies that may still send the
	// canary traffic although they do not carry this weight (they rejected
	// it, or disconnected recently): the canary's deletion waits for them,
	// bounded. Overdue are such proxies past the bound: the canary is
	// deleted anyway.
	Holding, Overdue []string
}

// Confirmed is the result of asking the traffic controller to confirm Weight.
type Confirmed struct {
	// Weight is the canary weight that was confirmed or rejected.
	Weight v1alpha1.BasisPoints
	Confirmation
}

// Observed is the world as the controller saw it for one reconcile.
type Observed struct {
	// Deployment is the team's Deployment; nil when it is gone.
	Deployment *DeploymentView
	// Canary is the canary Deployment; nil when it does not exist.
	Canary *CanaryView
	// Spec is the Rollout's spec with Delivery resolved from the Deployment's
	// annotations, the team's defaults and the built-in defaults.
	Spec v1alpha1.RolloutSpec
	// Status is the Rollout's status as stored.
	Status v1alpha1.RolloutStatus
	// Confirmed is the traffic controller's answer for the weight Needs
	// asked to confirm; nil when not asked or not answered in time.
	Confirmed *Confirmed
	// Unconfirmed is, when the traffic controller did not confirm the weight
	// Needs asked for, what it says it still waits for or why it failed.
	Unconfirmed string
	// Traffic is the traffic side's report on the service; nil when not
	// asked, which leaves the TrafficReady condition as it is.
	Traffic *TrafficReport
	// Samples are the metric samples when Needs asked for analysis.
	Samples *analysis.Input
	// Provenance says where the cumulative samples came from, when the
	// metric source can tell reporters apart; nil otherwise.
	Provenance *Provenance
	// Counts are the cumulative counts behind Samples merged with those the
	// status persisted (ResumeCounts), to persist again; nil when the metric
	// source keeps its own history.
	Counts *v1alpha1.AnalysisCounts
	// Now is the time of the observation.
	Now time.Time
}

// Needs says which inputs the next Step wants beyond the objects.
type Needs struct {
	// Confirm, when set, is the weight to confirm with the traffic controller.
	Confirm *v1alpha1.BasisPoints
	// Analyse asks for metric samples of both tracks.
	Analyse bool
	// Cumulative is the analysis' cumulative window: since the canary
	// revision started (Since), or RecentWindow when that is unknown.
	Cumulative time.Duration
	// Since is when the canary revision started; zero when unknown.
	Since time.Time
	// Recent is the analysis' recent window: RecentWindow, shorter while
	// the step is younger than that.
	Recent time.Duration
}

// ActionKind names an action of the shell.
type ActionKind string

// Actions the shell carries out, in the order Step returns them.
const (
	// EnsureCanary creates the canary Deployment from the Deployment's
	// current template, or updates its template, to Replicas replicas.
	EnsureCanary ActionKind = "EnsureCanary"
	// DeleteCanary deletes the canary Deployment.
	DeleteCanary ActionKind = "DeleteCanary"
	// UnpauseDeployment clears spec.paused and the pending-revision annotation.
	UnpauseDeployment ActionKind = "UnpauseDeployment"
	// ClearRequests clears the Rollout's consumed spec.promote, spec.abort
	// and spec.retryRevision.
	ClearRequests ActionKind = "ClearRequests"
)

// Action is one thing the shell must do.
type Action struct {
	// Kind says what.
	Kind ActionKind
	// Replicas is the canary's size for EnsureCanary.
	Replicas int32
}

// Event is a Kubernetes Event to record on the Rollout.
type Event struct {
	// Warning is true for a Warning event, false for Normal.
	Warning bool
	// Reason is a CamelCase reason, e.g. "StepConfirmed".
	Reason string
	// Message says what happened.
	Message string
}

// Result is the outcome of one Step.
type Result struct {
	// Status is the Rollout's next status.
	Status v1alpha1.RolloutStatus
	// Actions are what the shell must do, in order, after writing Status.
	Actions []Action
	// Events are to be recorded on the Rollout.
	Events []Event
	// RequeueAfter is when to look again; 0 waits for a watch event.
	RequeueAfter time.Duration
	// Outcome is the analysis outcome of this step, if one ran.
	Outcome *analysis.Outcome
}

// ReplicasFor is the canary size that carries weight of a Deployment with
// stable replicas: weight × replicas rounded up, at least 1.
func ReplicasFor(weight v1alpha1.BasisPoints, stable int32) int32 {
	if stable < 1 {
		stable = 1
	}
	n := (int64(weight)*int64(stable) + int64(v1alpha1.TotalBasisPoints) - 1) / int64(v1alpha1.TotalBasisPoints)
	if n < 1 {
		n = 1
	}
	return int32(n)
}

// stepInterval is the delivery's step interval, or the built-in default.
func stepInterval(d v1alpha1.Delivery) time.Duration {
	if d.StepInterval != nil && d.StepInterval.Duration > 0 {
		return d.StepInterval.Duration
	}
	return v1alpha1.DefaultDelivery().StepInterval.Duration
}

// targetWeight is the weight the current stage moves the canary to, and
// whether the stage holds until a promote (beta cohort, ab experiment).
func targetWeight(spec v1alpha1.RolloutSpec, st v1alpha1.RolloutStatus) (w v1alpha1.BasisPoints, held bool) {
	d := spec.Delivery
	switch d.Mode {
	case v1alpha1.ModeAB:
		if d.Split != nil {
			return *d.Split, true
		}
		return 0, true
	case v1alpha1.ModeBeta:
		if st.ReleasedAt == nil {
			return 0, true
		}
	}
	i := int(st.CurrentStepIndex)
	if i < 0 || i >= len(d.Steps) {
		return st.CurrentWeight, false
	}
	return d.Steps[i], false
}

// opted reports whether the delivery mode asks for progressive delivery.
func opted(m v1alpha1.DeliveryMode) bool {
	return m == v1alpha1.ModeCanary || m == v1alpha1.ModeBeta || m == v1alpha1.ModeAB
}

// describe names a rollout for messages, e.g. "canary abc123 at 5%".
func describe(st v1alpha1.RolloutStatus) string {
	return fmt.Sprintf("canary %s at %s", st.CanaryRevision, st.CurrentWeight)
}
