package analysis

import (
	"time"
)

// Verdict is the result of one check.
type Verdict string

const (
	// Pass means the check is satisfied: its value is within the limit and not confidently beyond it.
	Pass Verdict = "Pass"
	// Fail means the check is violated with the configured confidence.
	Fail Verdict = "Fail"
	// Inconclusive means the samples do not yet allow a judgement either way.
	Inconclusive Verdict = "Inconclusive"
	// NoData means the source returned nothing or failed; Config.NoData decides what that does to the outcome.
	NoData Verdict = "NoData"
)

// Action is what the rollout state machine should do after an evaluation.
type Action string

const (
	// Continue means every check passed: the rollout may advance once its step interval has elapsed.
	Continue Action = "Continue"
	// Hold means the rollout must stay at its current weight: a check is inconclusive (fewer than MinSamples
	// canary requests, no stable traffic to compare with) or lacks data under the Hold policy.
	Hold Action = "Hold"
	// Rollback means the canary must get no more traffic: a check failed (or lacks data under the Fail policy).
	Rollback Action = "Rollback"
)

// NoDataPolicy says how a check without data affects the outcome.
type NoDataPolicy string

const (
	// NoDataHold holds the rollout at its current weight until data arrives.
	NoDataHold NoDataPolicy = "Hold"
	// NoDataFail treats missing data as a failure: the rollout rolls back.
	NoDataFail NoDataPolicy = "Fail"
	// NoDataPass treats missing data as a pass.
	NoDataPass NoDataPolicy = "Pass"
)

// TrackSample is what a metric source observed for one track over one window.
type TrackSample struct {
	// Requests is the number of requests completed in the window.
	Requests uint64
	// Errors is the number of those requests that failed; never more than Requests.
	Errors uint64
	// LatencyP99 is the 99th percentile latency in the window, nil when no latency source exists.
	LatencyP99 *time.Duration
	// SlowRequests, when the source can count them (e.g. from histogram buckets), is the number of the window's
	// requests slower than Config.MaxLatencyP99; nil otherwise. With it, the latency ceiling is a sequential test
	// with the same guarantee as the error rate ("at most 1% of requests slower than the limit" is "p99 within
	// the limit"); without it the check compares a p99 gauge and says that it is not error-controlled.
	SlowRequests *uint64
	// SlowerThan is the latency SlowRequests counts above, when the source could only count against a histogram
	// bucket boundary above Config.MaxLatencyP99 (the test is then of that boundary, and says so); zero means
	// Config.MaxLatencyP99 itself.
	SlowerThan time.Duration
	// Present is true when the source delivered this sample. A present sample with zero requests means the
	// source works but the track saw no traffic.
	Present bool
	// Problem, for an absent sample, says why: the source's error, or what it returned instead of data.
	Problem string
	// SourceFailed, for an absent sample, is true when the source failed (as opposed to returning nothing).
	SourceFailed bool
}

// Tracks holds the samples of both tracks over the same window.
type Tracks struct {
	// Stable is the sample of the stable track.
	Stable TrackSample
	// Canary is the sample of the canary track.
	Canary TrackSample
}

// CustomSample is the value a custom query (e.g. a PromQL query from the team's DeploymentPolicy) returned.
type CustomSample struct {
	// Name identifies the query; it matches CustomCheck.Name.
	Name string
	// Value is the query's result.
	Value float64
	// Present is true when the query returned a value.
	Present bool
	// Problem, for an absent value, says why.
	Problem string
	// SourceFailed, for an absent value, is true when the source failed (as opposed to returning nothing).
	SourceFailed bool
}

// Input is everything one evaluation looks at.
type Input struct {
	// Recent holds the samples over a short trailing window (e.g. the last 10 s), counted within the current
	// canary revision like Cumulative (so never more than it). The rate tests also judge the canary's recent
	// window, which catches a fault that starts after a long clean run; the latency ceiling's p99 gauge reads it
	// when the source gives no counts of slow requests.
	Recent Tracks
	// Cumulative holds, per track, the counts since the current canary revision began (the stable track's over
	// the same span), never a previous revision's. Every error-controlled test is a function of these counts:
	// the guarantee assumes they only grow between evaluations of one revision.
	Cumulative Tracks
	// Custom holds the values of the custom queries, in any order.
	Custom []CustomSample
	// Evidence, when set, holds per track the promotion evidence over the same span as Cumulative (see
	// PromotionEvidence): load from authenticated reporters, no identity counting for more than the others
	// together. Advancing then also needs the checks to pass on it; whatever it shows only holds, never rolls
	// back: rollback is decided on all load (Cumulative, Recent) alone. Nil when the source cannot tell
	// reporters apart, in which case all load is evidence.
	Evidence *Tracks
}

// Decision records the judgement of one check, as shown on the Rollout's status.
type Decision struct {
	// Metric names the check: critical-error-rate, error-rate, error-rate-vs-stable, latency-p99, or
	// custom:<name>.
	Metric string
	// Value is the observed value: a ratio in [0, 1] for error rates, a difference of ratios for
	// error-rate-vs-stable, for latency the share of requests slower than the ceiling when the source counts
	// them and else the p99 in seconds, the raw value for custom metrics.
	Value float64
	// Threshold is the limit the value was judged against, in the same unit.
	Threshold float64
	// Samples is the number of canary requests the value rests on (0 for custom metrics).
	Samples uint64
	// Verdict is the check's result.
	Verdict Verdict
	// Reason explains the verdict in one short sentence (well under 512 bytes) with the evidence, e.g. "error rate
	// 0.8% (8/1000), at most 1.3% with 95% confidence; limit 1%".
	Reason string
	// Critical is true for a check whose failure rolls back at once.
	Critical bool
}

// Outcome is the result of one evaluation.
type Outcome struct {
	// Action is what the rollout should do.
	Action Action
	// Reason summarizes why, naming the deciding metric.
	Reason string
	// Decisions holds one entry per check, in a fixed order: critical-error-rate, error-rate,
	// error-rate-vs-stable, latency-p99, then custom checks by name.
	Decisions []Decision
}

// State is what an evaluation remembers for the next one. The caller persists it (e.g. on the Rollout's status)
// and passes it back; the zero value is the state before the first evaluation. The sequential tests need no
// memory beyond the cumulative counts, so a restarted controller that passes the same counts decides the same.
type State struct {
	// LastEvaluated is the time of the last evaluation.
	LastEvaluated time.Time
}
