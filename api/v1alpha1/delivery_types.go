package v1alpha1

import (
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/router"
)

// BasisPoints is a share in hundredths of a percent: 1 is 0.01%, 100 is 1% and
// TotalBasisPoints (10,000) is 100%. Weights, error rates and splits use it so
// that decimal percentages such as 0.5% are exact integers.
type BasisPoints int32

// TotalBasisPoints is 100%: the router's TotalWeight, of which BasisPoints
// is the stored form (signed, as the API's integers are).
const TotalBasisPoints = BasisPoints(router.TotalWeight)

// Weight is b as the router's weight, the one type traffic is published
// in. It fails for values outside 0..TotalBasisPoints, which a stored object
// may hold only if written around the API's validation.
func (b BasisPoints) Weight() (router.Weight, error) {
	if b < 0 || b > TotalBasisPoints {
		return 0, fmt.Errorf("%d basis points is outside 0..%d", b, TotalBasisPoints)
	}
	return router.Weight(b), nil
}

// String formats b as a percentage with no trailing zeros, e.g. "0.5%" or "25%".
func (b BasisPoints) String() string {
	return strconv.FormatFloat(float64(b)/100, 'f', -1, 64) + "%"
}

// DeliveryMode is how a Deployment's new versions reach users.
// +kubebuilder:validation:Enum=canary;beta;ab;off
type DeliveryMode string

// Delivery modes, the values of the sluice.dev/rollout annotation.
const (
	// ModeCanary moves traffic to the new version in weighted steps, then promotes.
	ModeCanary DeliveryMode = "canary"
	// ModeBeta sends only the cohort to the new version until someone promotes it.
	ModeBeta DeliveryMode = "beta"
	// ModeAB splits users stickily between the versions for an experiment.
	ModeAB DeliveryMode = "ab"
	// ModeOff opts the Deployment out: Kubernetes' own rolling update applies.
	ModeOff DeliveryMode = "off"
)

// MatchSource is where a cohort or sticky key is read from a request.
// +kubebuilder:validation:Enum=Header;Cookie
type MatchSource string

// Request parts a cohort or sticky key can come from.
const (
	// SourceHeader reads a request header (lower-case name).
	SourceHeader MatchSource = "Header"
	// SourceCookie reads one cookie from the Cookie header.
	SourceCookie MatchSource = "Cookie"
)

// CohortMatchType says how a cohort compares the request's value.
// +kubebuilder:validation:Enum=Exact;Present;Regex
type CohortMatchType string

// Cohort comparisons.
const (
	// MatchExact needs the value to equal Cohort.Value.
	MatchExact CohortMatchType = "Exact"
	// MatchPresent needs only the header to be present.
	MatchPresent CohortMatchType = "Present"
	// MatchRegex needs the whole value to match the RE2 expression Cohort.Value.
	MatchRegex CohortMatchType = "Regex"
)

// Cohort selects requests that always reach the new version.
type Cohort struct {
	// Source is Header or Cookie.
	Source MatchSource `json:"source"`
	// Name is the lower-case header name or the cookie name.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Match is Exact, Present (headers only) or Regex (headers only).
	Match CohortMatchType `json:"match"`
	// Value is the exact value or the RE2 expression; empty for Present.
	// +optional
	Value string `json:"value,omitempty"`
}

// Sticky names the request part that identifies a user, so a user stays on
// one version across requests.
type Sticky struct {
	// Source is Header or Cookie.
	Source MatchSource `json:"source"`
	// Name is the lower-case header name or the cookie name.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// NoDataPolicy is the verdict when a step ends without enough samples.
// +kubebuilder:validation:Enum=Hold;Fail;Pass
type NoDataPolicy string

// What analysis does with too few samples.
const (
	// NoDataHold keeps the current step and analyses again.
	NoDataHold NoDataPolicy = "Hold"
	// NoDataFail counts the step as failed.
	NoDataFail NoDataPolicy = "Fail"
	// NoDataPass lets the rollout proceed.
	NoDataPass NoDataPolicy = "Pass"
)

// Comparison says which side of a threshold is healthy.
// +kubebuilder:validation:Enum=Below;Above
type Comparison string

// Threshold directions.
const (
	// ComparisonBelow is healthy while the value is at or below the threshold.
	ComparisonBelow Comparison = "Below"
	// ComparisonAbove is healthy while the value is at or above the threshold.
	ComparisonAbove Comparison = "Above"
)

// MetricQuery is a custom Prometheus query judged at every step.
type MetricQuery struct {
	// Name identifies the metric in analysis decisions.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Query is a PromQL expression returning one sample. The placeholders
	// {{namespace}}, {{service}}, {{track}} and {{revision}} are replaced
	// before it runs.
	// +kubebuilder:validation:MinLength=1
	Query string `json:"query"`
	// Threshold is a decimal number, e.g. "0.5".
	// +kubebuilder:validation:MinLength=1
	Threshold string `json:"threshold"`
	// Comparison is Below (default) or Above.
	// +optional
	Comparison Comparison `json:"comparison,omitempty"`
}

// Analysis is the resolved configuration of metric analysis.
type Analysis struct {
	// Confidence is the statistical confidence a failing verdict needs.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9999
	Confidence BasisPoints `json:"confidence"`
	// MinSamples is the fewest requests a step needs before a verdict.
	// +kubebuilder:validation:Minimum=0
	MinSamples int32 `json:"minSamples"`
	// NoData is the verdict when a step has fewer than MinSamples requests.
	NoData NoDataPolicy `json:"noData"`
	// CriticalErrorRate is the error rate at which the canary's failure is
	// reported as critical; it rolls back at once, as every failing check does.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	CriticalErrorRate BasisPoints `json:"criticalErrorRate"`
	// Queries are custom Prometheus metrics judged alongside the built-in ones.
	// +optional
	// +listType=map
	// +listMapKey=name
	Queries []MetricQuery `json:"queries,omitempty"`
}

// Delivery is a Deployment's delivery configuration. ParseDelivery fills it
// from annotations, leaving unset what the annotations do not say; WithDefaults
// fills the rest from team and built-in defaults.
type Delivery struct {
	// Mode is canary, beta, ab or off; empty means the annotation is absent.
	// +optional
	Mode DeliveryMode `json:"mode,omitempty"`
	// Service is the logical service name.
	// +optional
	Service string `json:"service,omitempty"`
	// Steps are the canary weights, strictly increasing, each in (0, 10000).
	// +optional
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=9999
	Steps []BasisPoints `json:"steps,omitempty"`
	// StepInterval is the time held and analysed at each step.
	// +optional
	StepInterval *metav1.Duration `json:"stepInterval,omitempty"`
	// MaxErrorRate is the absolute ceiling on the canary's error rate.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	MaxErrorRate *BasisPoints `json:"maxErrorRate,omitempty"`
	// MaxLatencyP99 is the ceiling on the canary's p99 latency.
	// +optional
	MaxLatencyP99 *metav1.Duration `json:"maxLatencyP99,omitempty"`
	// Cohort selects requests that always reach the new version.
	// +optional
	Cohort *Cohort `json:"cohort,omitempty"`
	// Sticky names the user key for sticky splits.
	// +optional
	Sticky *Sticky `json:"sticky,omitempty"`
	// Split is the share of users on the new version in ab mode.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	Split *BasisPoints `json:"split,omitempty"`
	// Analysis configures metric analysis; set from team or built-in defaults.
	// +optional
	Analysis *Analysis `json:"analysis,omitempty"`
}
