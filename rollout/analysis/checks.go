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

// checkCritical judges the critical tier on the recent canary sample. It ignores MinSamples: the Wilson bound
// itself refuses to judge a handful of requests.
func checkCritical(s TrackSample, cfg Config, z float64) Decision {
	if !s.Present {
		return noData(MetricCriticalErrorRate, "recent canary sample", s, cfg.CriticalErrorRate, true)
	}
	d := Decision{
		Metric:    MetricCriticalErrorRate,
		Value:     rate(s.Errors, s.Requests),
		Threshold: cfg.CriticalErrorRate,
		Samples:   s.Requests,
		Critical:  true,
	}
	if s.Requests == 0 {
		d.Verdict, d.Reason = Inconclusive, "no canary requests in the recent window"
		return d
	}
	w := wilson(s.Errors, s.Requests, z)
	if w.lo > cfg.CriticalErrorRate {
		d.Verdict = Fail
		d.Reason = fmt.Sprintf("canary error rate %s (%d/%d) has %s lower bound %s above the critical rate %s",
			pct(d.Value), s.Errors, s.Requests, pct(cfg.Confidence), pct(w.lo), pct(cfg.CriticalErrorRate))
		return d
	}
	d.Verdict = Pass
	d.Reason = fmt.Sprintf("canary error rate %s (%d/%d): %s lower bound %s is not above the critical rate %s",
		pct(d.Value), s.Errors, s.Requests, pct(cfg.Confidence), pct(w.lo), pct(cfg.CriticalErrorRate))
	return d
}

// checkErrorRate judges the canary's error rate against the absolute ceiling: on the recent window once it holds
// MinSamples requests (fast detection), else on the cumulative sample since the analysis began, so that a canary
// whose share of traffic never fills a recent window with MinSamples requests can still be judged (and pass) once
// enough requests have accumulated. The cumulative judgement uses Confidence, the recent one RecentConfidence.
func checkErrorRate(recent, cumulative TrackSample, cfg Config, zRecent, zCumulative float64) Decision {
	if !recent.Present {
		return noData(MetricErrorRate, "recent canary sample", recent, cfg.MaxErrorRate, false)
	}
	if recent.Requests >= cfg.MinSamples || !cumulative.Present || cumulative.Requests < cfg.MinSamples {
		return judgeErrorRate(recent, "in the recent window", cfg, cfg.RecentConfidence, zRecent)
	}
	return judgeErrorRate(cumulative, "since the analysis began", cfg, cfg.Confidence, zCumulative)
}

// judgeErrorRate judges one sample against the ceiling: Fail when the lower confidence bound is above it, Pass
// when the observed rate is within it, Inconclusive before MinSamples requests or while the rate is above the
// ceiling but not confidently.
func judgeErrorRate(s TrackSample, where string, cfg Config, conf, z float64) Decision {
	d := Decision{
		Metric:    MetricErrorRate,
		Value:     rate(s.Errors, s.Requests),
		Threshold: cfg.MaxErrorRate,
		Samples:   s.Requests,
	}
	if s.Requests < cfg.MinSamples {
		d.Verdict = Inconclusive
		d.Reason = fmt.Sprintf("%d canary requests %s, fewer than the %d needed to judge", s.Requests, where, cfg.MinSamples)
		return d
	}
	w := wilson(s.Errors, s.Requests, z)
	bounds := fmt.Sprintf("canary error rate %s (%d/%d) %s, %s bounds [%s, %s], ceiling %s",
		pct(d.Value), s.Errors, s.Requests, where, pct(conf), pct(w.lo), pct(w.hi), pct(cfg.MaxErrorRate))
	switch {
	case w.lo > cfg.MaxErrorRate:
		d.Verdict, d.Reason = Fail, bounds+": above the ceiling"
	case w.hi <= cfg.MaxErrorRate:
		d.Verdict, d.Reason = Pass, bounds+": confidently below the ceiling"
	case d.Value <= cfg.MaxErrorRate:
		d.Verdict, d.Reason = Pass, bounds+": within the ceiling and not confidently above it"
	default:
		d.Verdict, d.Reason = Inconclusive, bounds+": above the ceiling, not yet confidently"
	}
	return d
}

// checkVsStable judges whether the canary's cumulative error rate exceeds the stable track's by more than the
// practical margin.
func checkVsStable(t Tracks, cfg Config, z float64) Decision {
	margin := cfg.AbsoluteTolerance
	if !t.Canary.Present {
		return noData(MetricErrorRateVsStable, "cumulative canary sample", t.Canary, margin, false)
	}
	if !t.Stable.Present {
		return noData(MetricErrorRateVsStable, "cumulative stable sample", t.Stable, margin, false)
	}
	c, s := t.Canary, t.Stable
	ps := rate(s.Errors, s.Requests)
	margin = max(cfg.AbsoluteTolerance, cfg.RelativeTolerance*ps)
	d := Decision{
		Metric:    MetricErrorRateVsStable,
		Value:     rate(c.Errors, c.Requests) - ps,
		Threshold: margin,
		Samples:   c.Requests,
	}
	switch {
	case c.Requests < cfg.MinSamples:
		d.Verdict = Inconclusive
		d.Reason = fmt.Sprintf("%d canary requests since the analysis began, fewer than the %d needed to judge", c.Requests, cfg.MinSamples)
		return d
	case s.Requests == 0:
		d.Verdict = Inconclusive
		d.Reason = "no stable requests since the analysis began to compare against"
		return d
	}
	iv := newcombe(c.Errors, c.Requests, s.Errors, s.Requests, z)
	bounds := fmt.Sprintf("canary %s (%d/%d) vs stable %s (%d/%d): difference %s, %s bounds [%s, %s], margin %s",
		pct(rate(c.Errors, c.Requests)), c.Errors, c.Requests, pct(ps), s.Errors, s.Requests,
		pct(d.Value), pct(cfg.Confidence), pct(iv.lo), pct(iv.hi), pct(margin))
	switch {
	case iv.lo > margin:
		d.Verdict, d.Reason = Fail, bounds+": canary is worse than stable"
	case iv.hi <= margin:
		d.Verdict, d.Reason = Pass, bounds+": canary is confidently no worse than stable"
	case d.Value <= margin:
		d.Verdict, d.Reason = Pass, bounds+": canary is within the margin and not confidently worse"
	default:
		d.Verdict, d.Reason = Inconclusive, bounds+": canary exceeds the margin, not yet confidently"
	}
	return d
}

// checkLatency judges the canary's recent p99 latency against its ceiling.
func checkLatency(s TrackSample, cfg Config) Decision {
	limit := cfg.MaxLatencyP99.Seconds()
	if !s.Present {
		return noData(MetricLatencyP99, "recent canary sample", s, limit, false)
	}
	if s.LatencyP99 == nil {
		return Decision{Metric: MetricLatencyP99, Threshold: limit, Samples: s.Requests, Verdict: NoData,
			Reason: "no p99 latency for the canary: the metric source has no latency data"}
	}
	p99 := *s.LatencyP99
	d := Decision{Metric: MetricLatencyP99, Value: p99.Seconds(), Threshold: limit, Samples: s.Requests}
	switch {
	case s.Requests < cfg.MinSamples:
		d.Verdict = Inconclusive
		d.Reason = fmt.Sprintf("p99 %v over %d canary requests, fewer than the %d needed to judge", p99, s.Requests, cfg.MinSamples)
	case p99 > cfg.MaxLatencyP99:
		d.Verdict = Fail
		d.Reason = fmt.Sprintf("canary p99 %v over %d requests is above the ceiling %v", p99, s.Requests, cfg.MaxLatencyP99)
	default:
		d.Verdict = Pass
		d.Reason = fmt.Sprintf("canary p99 %v over %d requests is within the ceiling %v", p99, s.Requests, cfg.MaxLatencyP99)
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
			d.Reason = fmt.Sprintf("%s = %g is above the maximum %g", c.Name, s.Value, *c.Max)
		case c.Min != nil && s.Value < *c.Min:
			d.Value, d.Threshold, d.Verdict = s.Value, *c.Min, Fail
			d.Reason = fmt.Sprintf("%s = %g is below the minimum %g", c.Name, s.Value, *c.Min)
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

// pct formats a ratio as a percentage with up to three significant decimals.
func pct(r float64) string {
	return fmt.Sprintf("%.3g%%", r*100)
}
