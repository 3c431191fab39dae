package analysis

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// Config holds the thresholds of an analysis. Start from Defaults and override what the Deployment's annotations
// or the team's DeploymentPolicy set; Evaluate rejects a Config that fails Validate.
type Config struct {
	// MaxErrorRate is the ceiling on the canary's error rate, in [0, 1]; 0 disables the ceiling.
	MaxErrorRate float64
	// MaxLatencyP99 is the ceiling on the canary's p99 latency; 0 disables the check.
	MaxLatencyP99 time.Duration
	// Confidence, in (0.5, 1), is the guarantee: a canary whose true error rates are within their limits is
	// rolled back by the error-controlled checks with probability at most 1 − Confidence over the whole rollout,
	// however long it runs and however often it is evaluated. The budget 1 − Confidence is split evenly across
	// the error-controlled tests (see Budget).
	Confidence float64
	// MinSamples is the number of canary requests since the canary began that a check needs before it passes
	// and lets the rollout advance. It never delays a failure: the sequential tests need no minimum to be valid.
	MinSamples uint64
	// NoData says what a check without data does to the outcome.
	NoData NoDataPolicy
	// CriticalErrorRate is the error rate, in (0, 1], at which the canary's failure is reported as critical.
	// It is the same test as the ceiling at another rate: when MaxErrorRate is set (and not above it), a
	// critical failure implies a ceiling failure and spends no budget of its own; without a ceiling it is the
	// rate test.
	CriticalErrorRate float64
	// AbsoluteTolerance is how far, as a difference of ratios in [0, 1), the canary's error rate may exceed the
	// stable track's before the comparison fails.
	AbsoluteTolerance float64
	// RelativeTolerance is how far, as a multiple of the stable track's error rate (≥ 0), the canary's may
	// exceed it before the comparison fails. The larger of the two tolerances applies.
	RelativeTolerance float64
	// Custom holds the checks on custom metrics, with unique names.
	Custom []CustomCheck
}

// CustomCheck bounds a custom metric. At least one bound is set; the metric fails when it is below Min or above
// Max.
type CustomCheck struct {
	// Name identifies the metric; it matches CustomSample.Name.
	Name string
	// Min is the lowest acceptable value, nil for no lower bound.
	Min *float64
	// Max is the highest acceptable value, nil for no upper bound.
	Max *float64
	// Critical makes a failure roll back at once.
	Critical bool
}

// Defaults returns the configuration used where nothing else is set: a 5% error-rate ceiling, 99% confidence
// (a healthy canary is rolled back with probability at most 1%), 50 canary requests before advancing, hold
// without data, a 50% critical rate, and a canary that may err up to 0.5 percentage points or twice the stable
// rate above the stable track.
func Defaults() Config {
	return Config{
		MaxErrorRate:      0.05,
		Confidence:        0.99,
		MinSamples:        50,
		NoData:            NoDataHold,
		CriticalErrorRate: 0.5,
		AbsoluteTolerance: 0.005,
		RelativeTolerance: 1,
	}
}

// Budget is how the error budget 1 − Confidence is split across the error-controlled tests. The shares sum to
// 1 − Confidence, so by the union bound the probability that any of them ever wrongly rejects is at most that.
type Budget struct {
	// Rate is the level of the canary's error-rate test on its counts since it began: the ceiling, or the
	// critical rate without a ceiling.
	Rate float64
	// Window is the level of the same test on the recent window, which catches a fault that starts late, after
	// a long clean run has built up evidence of health in the counts since the canary began.
	Window float64
	// CanaryVsStable is the level of the comparison with the stable track, half for the canary's lower
	// confidence sequence and half for the stable track's upper one.
	CanaryVsStable float64
	// Latency is the level of the count-based latency test; 0 when no latency ceiling is set.
	Latency float64
}

// Budget splits 1 − Confidence evenly across the rate test, the recent-window rate test, the comparison with
// stable, and the latency test when a latency ceiling is set. The latency share is reserved even when the source
// gives only a p99 gauge, so that the split does not depend on the data.
func (c Config) Budget() Budget {
	alpha := 1 - c.Confidence
	if c.MaxLatencyP99 > 0 {
		return Budget{Rate: alpha / 4, Window: alpha / 4, CanaryVsStable: alpha / 4, Latency: alpha / 4}
	}
	return Budget{Rate: alpha / 3, Window: alpha / 3, CanaryVsStable: alpha / 3}
}

// Validate reports every field out of range, joined, each naming the field and the accepted values.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !inRange(c.MaxErrorRate, 0, 1) {
		bad("maxErrorRate %v: want a ratio in [0, 1] (0 disables the ceiling)", c.MaxErrorRate)
	}
	if c.MaxLatencyP99 < 0 {
		bad("maxLatencyP99 %v: want a duration ≥ 0 (0 disables the check)", c.MaxLatencyP99)
	}
	if !(c.Confidence > 0.5 && c.Confidence < 1) {
		bad("confidence %v: want a value in (0.5, 1), e.g. 0.99", c.Confidence)
	}
	switch c.NoData {
	case NoDataHold, NoDataFail, NoDataPass:
	default:
		bad("noData %q: want %q, %q or %q", c.NoData, NoDataHold, NoDataFail, NoDataPass)
	}
	if !(c.CriticalErrorRate > 0 && c.CriticalErrorRate <= 1) {
		bad("criticalErrorRate %v: want a ratio in (0, 1]", c.CriticalErrorRate)
	}
	if !inRange(c.AbsoluteTolerance, 0, 1) || c.AbsoluteTolerance == 1 {
		bad("absoluteTolerance %v: want a difference of ratios in [0, 1)", c.AbsoluteTolerance)
	}
	if math.IsNaN(c.RelativeTolerance) || math.IsInf(c.RelativeTolerance, 0) || c.RelativeTolerance < 0 {
		bad("relativeTolerance %v: want a finite multiple ≥ 0", c.RelativeTolerance)
	}
	seen := map[string]bool{}
	for i, cc := range c.Custom {
		switch {
		case cc.Name == "":
			bad("custom[%d]: name is empty", i)
		case seen[cc.Name]:
			bad("custom[%d]: name %q is used twice", i, cc.Name)
		}
		seen[cc.Name] = true
		if cc.Min == nil && cc.Max == nil {
			bad("custom[%d] %q: set min, max or both", i, cc.Name)
		}
		if cc.Min != nil && !finite(*cc.Min) || cc.Max != nil && !finite(*cc.Max) {
			bad("custom[%d] %q: bounds must be finite numbers", i, cc.Name)
		}
		if cc.Min != nil && cc.Max != nil && *cc.Min > *cc.Max {
			bad("custom[%d] %q: min %v is above max %v", i, cc.Name, *cc.Min, *cc.Max)
		}
	}
	return errors.Join(errs...)
}

// validateInput reports samples that cannot be true: more errors than requests, NaN custom values.
func validateInput(in Input) error {
	var errs []error
	check := func(window, track string, s TrackSample) {
		if s.Present && s.Errors > s.Requests {
			errs = append(errs, fmt.Errorf("%s %s sample: %d errors out of %d requests", window, track, s.Errors, s.Requests))
		}
		if s.Present && s.LatencyP99 != nil && *s.LatencyP99 < 0 {
			errs = append(errs, fmt.Errorf("%s %s sample: negative p99 latency %v", window, track, *s.LatencyP99))
		}
	}
	check("recent", "stable", in.Recent.Stable)
	check("recent", "canary", in.Recent.Canary)
	check("cumulative", "stable", in.Cumulative.Stable)
	check("cumulative", "canary", in.Cumulative.Canary)
	if in.Evidence != nil {
		check("evidence", "stable", in.Evidence.Stable)
		check("evidence", "canary", in.Evidence.Canary)
	}
	names := make([]string, 0, len(in.Custom))
	seen := map[string]bool{}
	for _, c := range in.Custom {
		if c.Present && !finite(c.Value) {
			errs = append(errs, fmt.Errorf("custom sample %q: value %v is not a finite number", c.Name, c.Value))
		}
		if seen[c.Name] {
			names = append(names, c.Name)
		}
		seen[c.Name] = true
	}
	sort.Strings(names)
	for _, n := range names {
		errs = append(errs, fmt.Errorf("custom sample %q given twice", n))
	}
	return errors.Join(errs...)
}

func inRange(v, lo, hi float64) bool { return !math.IsNaN(v) && v >= lo && v <= hi }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
