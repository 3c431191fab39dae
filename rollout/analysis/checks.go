package analysis

import (
	"fmt"
	"sort"
)

// Metric names used in Decision.Metric.
const (
	MetricCriticalErrorRate = "critical-error-rate"
	MetricErrorRate         = "error-rate"
	MetricErrorRateVsStable = "error-rate-vs-stable"
	MetricLatencyP99        = "latency-p99"
	// CustomMetricPrefix prefixes the names of custom checks in Decision.Metric.
	CustomMetricPrefix = "custom:"
)

// noData returns the NoData decision for a missing sample, saying whether the source failed or returned nothing.
func noData(metric, what string, s TrackSample, threshold float64, critical bool) Decision {
	return Decision{
		Metric:    metric,
		Threshold: threshold,
		Verdict:   NoData,
		Reason:    absentReason(what, s.Problem, s.SourceFailed),
		Critical:  critical,
	}
}

func absentReason(what, problem string, sourceFailed bool) string {
	kind := "source returned no data"
	if sourceFailed {
		kind = "source failed"
	}
	if problem == "" {
		return fmt.Sprintf("no %s: %s", what, kind)
	}
	return fmt.Sprintf("no %s: %s: %s", what, kind, problem)
}

// rateAnchor is the limit the rate test's mixture is anchored at: the ceiling, or the critical rate without one.
func rateAnchor(cfg Config) float64 {
	if cfg.MaxErrorRate > 0 {
		return cfg.MaxErrorRate
	}
	return cfg.CriticalErrorRate
}

// criticalRate is the rate the critical tier tests: never below the ceiling, so that a critical failure is
// always also a ceiling failure and the critical tier needs no budget of its own.
func criticalRate(cfg Config) float64 { return max(cfg.CriticalErrorRate, cfg.MaxErrorRate) }

// counts formats an error rate with its counts, e.g. "0.8% (8/1000)".
func counts(k, n uint64) string { return fmt.Sprintf("%s (%d/%d)", pct(rate(k, n)), k, n) }

// checkCritical runs the rate test against the critical rate on the canary's counts since it began. With a
// ceiling it is the ceiling's test evaluated at a higher rate: the mixture is monotone in the rate, so it rejects
// the critical rate only when it also rejects the ceiling, and the two together keep the ceiling's share of the
// budget.
func checkCritical(recent Tracks, s TrackSample, cfg Config, b Budget, explain bool) Decision {
	crit := criticalRate(cfg)
	if !s.Present {
		return noData(MetricCriticalErrorRate, "canary counts", s, crit, true)
	}
	d := Decision{
		Metric:    MetricCriticalErrorRate,
		Value:     rate(s.Errors, s.Requests),
		Threshold: crit,
		Samples:   s.Requests,
		Critical:  true,
	}
	if s.Requests == 0 {
		d.Verdict, d.Reason = Inconclusive, "no canary requests yet"
		return d
	}
	m := mixtureAbove(rateAnchor(cfg))
	if m.rejects(s.Errors, s.Requests, crit, b.Rate) {
		d.Verdict = Fail
		if !explain {
			return d
		}
		d.Reason = fmt.Sprintf("error rate %s, at least %s with %s confidence; critical rate %s",
			counts(s.Errors, s.Requests), pct(m.lowerBound(s.Errors, s.Requests, b.Rate)), pct(cfg.Confidence), pct(crit))
		return d
	}
	if w, level, ok := window(recent, s, cfg, b); ok && m.rejects(w.Errors, w.Requests, crit, level) {
		d.Verdict, d.Value, d.Samples = Fail, rate(w.Errors, w.Requests), w.Requests
		if !explain {
			return d
		}
		d.Reason = fmt.Sprintf("error rate %s in the recent window, at least %s with %s confidence; critical rate %s",
			counts(w.Errors, w.Requests), pct(m.lowerBound(w.Errors, w.Requests, level)), pct(cfg.Confidence), pct(crit))
		return d
	}
	d.Verdict = Pass
	if explain {
		d.Reason = fmt.Sprintf("error rate %s, not shown above the critical rate %s", counts(s.Errors, s.Requests), pct(crit))
	}
	return d
}

// checkErrorRate runs the sequential test of "canary error rate ≤ MaxErrorRate" on the canary's counts since it
// began: Fail when it rejects, whatever the number of requests; otherwise Pass once there are MinSamples
// requests, Inconclusive before. The reason gives the anytime-valid upper bound, or on failure the lower one.
func checkErrorRate(recent Tracks, s TrackSample, cfg Config, b Budget, explain bool) Decision {
	if !s.Present {
		return noData(MetricErrorRate, "canary counts", s, cfg.MaxErrorRate, false)
	}
	d := Decision{
		Metric:    MetricErrorRate,
		Value:     rate(s.Errors, s.Requests),
		Threshold: cfg.MaxErrorRate,
		Samples:   s.Requests,
	}
	d.Verdict, d.Reason = judgeCeiling(s.Requests, s.Errors, cfg.MaxErrorRate, cfg, b.Rate, explain,
		"error rate", counts(s.Errors, s.Requests), pct(cfg.MaxErrorRate))
	if d.Verdict == Fail {
		return d
	}
	if w, level, ok := window(recent, s, cfg, b); ok {
		m := mixtureAbove(cfg.MaxErrorRate)
		if m.rejects(w.Errors, w.Requests, cfg.MaxErrorRate, level) {
			d.Verdict, d.Value, d.Samples = Fail, rate(w.Errors, w.Requests), w.Requests
			d.Reason = ""
			if explain {
				d.Reason = fmt.Sprintf("error rate %s in the recent window, at least %s with %s confidence; limit %s",
					counts(w.Errors, w.Requests), pct(m.lowerBound(w.Errors, w.Requests, level)), pct(cfg.Confidence), pct(cfg.MaxErrorRate))
			}
		}
	}
	return d
}

// window returns the recent canary sample and the level its test runs at, when it adds to the counts since the
// canary began: it holds requests, and fewer than those counts (the requests before it are the first j of them).
// A window holding every request since the canary began has the same data as the cumulative test, which judges
// it at a less strict level. A window in which the stable track erred as much (its recent rate plus the
// tolerance is at least the canary's) is not judged: that is an outage of both tracks, not the canary's fault.
// Skipping a test only removes rejections, so this keeps the guarantee.
func window(recent Tracks, cumulative TrackSample, cfg Config, b Budget) (TrackSample, float64, bool) {
	c, s := recent.Canary, recent.Stable
	if !c.Present || c.Requests == 0 || c.Requests >= cumulative.Requests {
		return TrackSample{}, 0, false
	}
	if s.Present && s.Requests > 0 {
		ps := rate(s.Errors, s.Requests)
		if rate(c.Errors, c.Requests) <= ps+max(cfg.AbsoluteTolerance, cfg.RelativeTolerance*ps) {
			return TrackSample{}, 0, false
		}
	}
	return c, windowLevel(b.Window, cumulative.Requests-c.Requests), true
}

// judgeCeiling runs the sequential ceiling test on k bad out of n requests at level alpha and, if explain, words
// the verdict: what is the observed value, limit the limit as shown.
func judgeCeiling(n, k uint64, ceiling float64, cfg Config, alpha float64, explain bool, what, observed, limit string) (Verdict, string) {
	m := mixtureAbove(ceiling)
	conf := pct(cfg.Confidence)
	fails := m.rejects(k, n, ceiling, alpha)
	switch {
	case !explain && fails:
		return Fail, ""
	case !explain && n < cfg.MinSamples:
		return Inconclusive, ""
	case !explain:
		return Pass, ""
	case fails:
		return Fail, fmt.Sprintf("%s %s, at least %s with %s confidence; limit %s",
			what, observed, pct(m.lowerBound(k, n, alpha)), conf, limit)
	}
	bound := fmt.Sprintf("%s %s, at most %s with %s confidence; limit %s", what, observed, pct(upperBound(k, n, alpha)), conf, limit)
	if n < cfg.MinSamples {
		return Inconclusive, fmt.Sprintf("%s; %d of the %d requests needed to advance", bound, n, cfg.MinSamples)
	}
	return Pass, bound
}

// checkVsStable tests whether the canary's error rate exceeds the stable track's by more than the tolerance,
// max(AbsoluteTolerance, RelativeTolerance × stable rate), on the counts since the canary began. There is no
// closed-form mixture for a difference with an unknown stable rate, so it combines two confidence sequences: an
// upper one U for the stable rate and the canary's rate test against U plus the tolerance at U. If the canary's
// rate is within the tolerance of the stable one, the test can reject only when the stable rate is above U or the
// canary's test rejects a true null, each at half the comparison's budget (the tolerance grows with the stable
// rate, so a stable rate below U only loosens the limit). This assumes each track's rate is steady over the span.
func checkVsStable(t Tracks, cfg Config, b Budget, explain bool) Decision {
	if !t.Canary.Present {
		return noData(MetricErrorRateVsStable, "canary counts", t.Canary, cfg.AbsoluteTolerance, false)
	}
	if !t.Stable.Present {
		return noData(MetricErrorRateVsStable, "stable counts", t.Stable, cfg.AbsoluteTolerance, false)
	}
	c, s := t.Canary, t.Stable
	ps := rate(s.Errors, s.Requests)
	tolerance := func(p float64) float64 { return max(cfg.AbsoluteTolerance, cfg.RelativeTolerance*p) }
	d := Decision{
		Metric:    MetricErrorRateVsStable,
		Value:     rate(c.Errors, c.Requests) - ps,
		Threshold: tolerance(ps),
		Samples:   c.Requests,
	}
	if s.Requests == 0 {
		d.Verdict = Inconclusive
		if explain {
			d.Reason = fmt.Sprintf("canary %s; no stable requests to compare with", counts(c.Errors, c.Requests))
		}
		return d
	}
	half := b.CanaryVsStable / 2
	// U ≥ the observed stable rate and the tolerance grows with it, so a canary whose observed rate is within the
	// tolerance of the observed stable rate is at or below the bound, where the test cannot reject: that common
	// case needs no bound unless it is to be shown.
	if pc := rate(c.Errors, c.Requests); pc <= ps+tolerance(ps) && !explain {
		d.Verdict = Pass
		if c.Requests < cfg.MinSamples {
			d.Verdict = Inconclusive
		}
		return d
	}
	us := upperBound(s.Errors, s.Requests, half)
	bound := us + tolerance(us)
	observed := fmt.Sprintf("canary %s vs stable %s", counts(c.Errors, c.Requests), counts(s.Errors, s.Requests))
	limit := "stable + " + points(cfg.AbsoluteTolerance)
	if cfg.RelativeTolerance > 0 {
		limit = fmt.Sprintf("stable + max(%s, %g × stable)", points(cfg.AbsoluteTolerance), cfg.RelativeTolerance)
	}
	conf := pct(cfg.Confidence)
	if bound < 1 {
		m := mixtureAbove(max(cfg.AbsoluteTolerance, gridMin))
		if m.rejects(c.Errors, c.Requests, bound, half) {
			d.Verdict = Fail
			if !explain {
				return d
			}
			d.Reason = fmt.Sprintf("%s: canary at least %s, stable at most %s with %s confidence; limit %s",
				observed, pct(m.lowerBound(c.Errors, c.Requests, half)), pct(us), conf, limit)
			return d
		}
	}
	d.Verdict = Pass
	if c.Requests < cfg.MinSamples {
		d.Verdict = Inconclusive
	}
	if !explain {
		return d
	}
	d.Reason = fmt.Sprintf("%s: stable at most %s with %s confidence, canary not shown above %s; limit %s",
		observed, pct(us), conf, pct(bound), limit)
	if d.Verdict == Inconclusive {
		d.Reason += fmt.Sprintf("; %d of the %d requests needed to advance", c.Requests, cfg.MinSamples)
	}
	return d
}

// checkLatency judges the canary's latency against MaxLatencyP99. When the source counts the requests slower
// than the ceiling, it is the sequential ceiling test of "at most 1% of requests are slower", on the counts since
// the canary began. Otherwise it compares the recent p99 gauge, once the window holds MinSamples requests, and
// the reason says that this check is not error-controlled.
func checkLatency(recent, cumulative TrackSample, cfg Config, b Budget, explain bool) Decision {
	limit := cfg.MaxLatencyP99
	if cumulative.Present && cumulative.SlowRequests != nil {
		slow, n := *cumulative.SlowRequests, cumulative.Requests
		over, note := limit, ""
		if cumulative.SlowerThan > limit {
			// A histogram counts only at its buckets' boundaries: slower than the next one up is all it can tell.
			over, note = cumulative.SlowerThan, fmt.Sprintf(", counted at the histogram bucket %v", cumulative.SlowerThan)
		}
		d := Decision{Metric: MetricLatencyP99, Value: rate(slow, n), Threshold: 0.01, Samples: n}
		d.Verdict, d.Reason = judgeCeiling(n, min(slow, n), 0.01, cfg, b.Latency, explain,
			fmt.Sprintf("share slower than %v", over), counts(slow, n), "1% (p99 "+limit.String()+note+")")
		return d
	}
	if !recent.Present {
		return noData(MetricLatencyP99, "recent canary sample", recent, limit.Seconds(), false)
	}
	if recent.LatencyP99 == nil {
		return Decision{Metric: MetricLatencyP99, Threshold: limit.Seconds(), Samples: recent.Requests, Verdict: NoData,
			Reason: "no p99 latency for the canary: the metric source has no latency data"}
	}
	p99 := *recent.LatencyP99
	d := Decision{Metric: MetricLatencyP99, Value: p99.Seconds(), Threshold: limit.Seconds(), Samples: recent.Requests}
	const gauge = " (a p99 gauge: not error-controlled)"
	switch {
	case recent.Requests < cfg.MinSamples:
		d.Verdict = Inconclusive
		d.Reason = fmt.Sprintf("p99 %v over %d recent requests; %d needed to judge%s", p99, recent.Requests, cfg.MinSamples, gauge)
	case p99 > limit:
		d.Verdict = Fail
		d.Reason = fmt.Sprintf("p99 %v over %d recent requests; limit %v%s", p99, recent.Requests, limit, gauge)
	default:
		d.Verdict = Pass
		d.Reason = fmt.Sprintf("p99 %v over %d recent requests; limit %v%s", p99, recent.Requests, limit, gauge)
	}
	return d
}

// checkCustom judges each configured custom metric, ordered by name.
func checkCustom(checks []CustomCheck, samples []CustomSample) []Decision {
	byName := make(map[string]CustomSample, len(samples))
	for _, s := range samples {
		byName[s.Name] = s
	}
	sorted := append([]CustomCheck(nil), checks...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	out := make([]Decision, 0, len(sorted))
	for _, c := range sorted {
		d := Decision{Metric: CustomMetricPrefix + c.Name, Critical: c.Critical}
		switch {
		case c.Max != nil:
			d.Threshold = *c.Max
		case c.Min != nil:
			d.Threshold = *c.Min
		}
		s, ok := byName[c.Name]
		switch {
		case !ok:
			d.Verdict, d.Reason = NoData, fmt.Sprintf("no value for custom metric %q: the caller supplied none", c.Name)
		case !s.Present:
			d.Verdict, d.Reason = NoData, absentReason(fmt.Sprintf("value for custom metric %q", c.Name), s.Problem, s.SourceFailed)
		case c.Max != nil && s.Value > *c.Max:
			d.Value, d.Verdict = s.Value, Fail
			d.Reason = fmt.Sprintf("%s = %g is above the maximum %g (a gauge: not error-controlled)", c.Name, s.Value, *c.Max)
		case c.Min != nil && s.Value < *c.Min:
			d.Value, d.Threshold, d.Verdict = s.Value, *c.Min, Fail
			d.Reason = fmt.Sprintf("%s = %g is below the minimum %g (a gauge: not error-controlled)", c.Name, s.Value, *c.Min)
		default:
			d.Value, d.Verdict = s.Value, Pass
			d.Reason = fmt.Sprintf("%s = %g is within bounds %s", c.Name, s.Value, bounds(c))
		}
		out = append(out, d)
	}
	return out
}

func bounds(c CustomCheck) string {
	lo, hi := "-inf", "+inf"
	if c.Min != nil {
		lo = fmt.Sprintf("%g", *c.Min)
	}
	if c.Max != nil {
		hi = fmt.Sprintf("%g", *c.Max)
	}
	return "[" + lo + ", " + hi + "]"
}

// pct formats a ratio as a percentage with up to three significant digits.
func pct(r float64) string {
	return fmt.Sprintf("%.3g%%", r*100)
}

// points formats a difference of ratios in percentage points.
func points(r float64) string {
	if r == 0.01 {
		return "1 point"
	}
	return fmt.Sprintf("%.3g points", r*100)
}
