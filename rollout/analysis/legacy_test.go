package analysis

// The analysis as it was before the sequential tests (fixed-sample Wilson and Newcombe bounds on a 10 s recent
// window and the cumulative counts, MinSamples gating failures, consecutive-failure counting), kept for the
// simulations to measure against, side by side in the same runs. Test code only.

import (
	"fmt"
	"math"
	"time"
)

// legacyCfg is the configuration of the old checks: Config with the two settings the sequential tests no longer
// have.
type legacyCfg struct {
	Config
	// RecentConfidence is the confidence of the recent-window judgement.
	RecentConfidence float64
	// ConsecutiveFailures is how many failing evaluations in a row roll back.
	ConsecutiveFailures int
}

// legacyState is what the old checks remembered between evaluations.
type legacyState struct {
	State
	// ConsecutiveFailures counts the failing evaluations in a row.
	ConsecutiveFailures int
}

// legacyConfig is what rollout.AnalysisConfig(DefaultDelivery()) gave before: a 1% ceiling, 95% confidence
// (99.5% on the recent window), 100 samples, 2 consecutive failures, a 20% critical rate, and the tolerance of
// Defaults (0.5 points or once the stable rate).
func legacyConfig() legacyCfg {
	cfg := legacyCfg{Config: Defaults(), RecentConfidence: 1 - 0.05/10, ConsecutiveFailures: 2}
	cfg.MaxErrorRate = 0.01
	cfg.Confidence = 0.95
	cfg.MinSamples = 100
	cfg.CriticalErrorRate = 0.2
	return cfg
}

// zOneSided returns the standard normal quantile z with P(Z ≤ z) = confidence, for 0 < confidence < 1.
func zOneSided(confidence float64) float64 {
	return math.Sqrt2 * math.Erfinv(2*confidence-1)
}

// interval is a closed interval of proportions within [0, 1].
type interval struct {
	lo, hi float64
}

// wilson returns the Wilson score interval for k successes out of n trials at the normal quantile z; each bound is
// a one-sided bound at the confidence z stands for. With n == 0 it returns [0, 1]: nothing is known.
func wilson(k, n uint64, z float64) interval {
	if n == 0 {
		return interval{lo: 0, hi: 1}
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	denom := 1 + z2/nf
	center := (p + z2/(2*nf)) / denom
	half := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / denom
	lo, hi := center-half, center+half
	// The exact bounds at k == 0 and k == n are 0 and 1; floating point can miss them by an ulp.
	if k == 0 || lo < 0 {
		lo = 0
	}
	if k == n || hi > 1 {
		hi = 1
	}
	return interval{lo: lo, hi: hi}
}

// newcombe returns Newcombe's hybrid score interval (method 10) for the difference p1 − p2 of two proportions,
// k1/n1 and k2/n2, at the normal quantile z.
func newcombe(k1, n1, k2, n2 uint64, z float64) interval {
	p1 := rate(k1, n1)
	p2 := rate(k2, n2)
	w1 := wilson(k1, n1, z)
	w2 := wilson(k2, n2, z)
	d := p1 - p2
	lo := d - math.Sqrt((p1-w1.lo)*(p1-w1.lo)+(w2.hi-p2)*(w2.hi-p2))
	hi := d + math.Sqrt((w1.hi-p1)*(w1.hi-p1)+(p2-w2.lo)*(p2-w2.lo))
	return interval{lo: math.Max(lo, -1), hi: math.Min(hi, 1)}
}

// legacyCheckCritical judges the critical tier on the recent canary sample. It ignores MinSamples: the Wilson bound
// itself refuses to judge a handful of requests.
func legacyCheckCritical(s TrackSample, cfg Config, z float64) Decision {
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

// legacyCheckErrorRate judges the canary's error rate against the absolute ceiling: on the recent window once it holds
// MinSamples requests (fast detection), else on the cumulative sample since the analysis began, so that a canary
// whose share of traffic never fills a recent window with MinSamples requests can still be judged (and pass) once
// enough requests have accumulated. The cumulative judgement uses Confidence, the recent one RecentConfidence.
func legacyCheckErrorRate(recent, cumulative TrackSample, cfg legacyCfg, zRecent, zCumulative float64) Decision {
	if !recent.Present {
		return noData(MetricErrorRate, "recent canary sample", recent, cfg.MaxErrorRate, false)
	}
	if recent.Requests >= cfg.MinSamples || !cumulative.Present || cumulative.Requests < cfg.MinSamples {
		return legacyJudgeErrorRate(recent, "in the recent window", cfg.Config, cfg.RecentConfidence, zRecent)
	}
	return legacyJudgeErrorRate(cumulative, "since the analysis began", cfg.Config, cfg.Confidence, zCumulative)
}

// legacyJudgeErrorRate judges one sample against the ceiling: Fail when the lower confidence bound is above it, Pass
// when the observed rate is within it, Inconclusive before MinSamples requests or while the rate is above the
// ceiling but not confidently.
func legacyJudgeErrorRate(s TrackSample, where string, cfg Config, conf, z float64) Decision {
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

// legacyCheckVsStable judges whether the canary's cumulative error rate exceeds the stable track's by more than the
// practical margin.
func legacyCheckVsStable(t Tracks, cfg Config, z float64) Decision {
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

func legacyEvaluate(state legacyState, in Input, cfg legacyCfg, now time.Time) (Outcome, legacyState, error) {

	z := zOneSided(cfg.Confidence)
	decisions := []Decision{legacyCheckCritical(in.Recent.Canary, cfg.Config, z)}
	if cfg.MaxErrorRate > 0 {
		decisions = append(decisions, legacyCheckErrorRate(in.Recent.Canary, in.Cumulative.Canary, cfg, zOneSided(cfg.RecentConfidence), z))
	}
	decisions = append(decisions, legacyCheckVsStable(in.Cumulative, cfg.Config, z))

	worst, deciding := effectPass, -1
	for i, d := range decisions {
		if e := cfg.effectOf(d); e > worst {
			worst, deciding = e, i
		}
	}

	next := state
	fresh := now.After(state.LastEvaluated)
	if fresh {
		next.LastEvaluated = now
		if worst >= effectFail {
			next.ConsecutiveFailures = state.ConsecutiveFailures + 1
		} else {
			next.ConsecutiveFailures = 0
		}
	}

	out := Outcome{Decisions: decisions}
	switch {
	case worst == effectCritical:
		out.Action = Rollback
		out.Reason = fmt.Sprintf("critical check %s failed: %s", decisions[deciding].Metric, decisions[deciding].Reason)
	case worst == effectFail && next.ConsecutiveFailures >= cfg.ConsecutiveFailures:
		out.Action = Rollback
		out.Reason = fmt.Sprintf("%s failed in %d consecutive evaluations: %s",
			decisions[deciding].Metric, next.ConsecutiveFailures, decisions[deciding].Reason)
	case worst == effectFail:
		out.Action = Hold
		out.Reason = fmt.Sprintf("%s failed (%d of %d consecutive failures before rollback): %s",
			decisions[deciding].Metric, next.ConsecutiveFailures, cfg.ConsecutiveFailures, decisions[deciding].Reason)
	case worst == effectHold:
		out.Action = Hold
		out.Reason = fmt.Sprintf("%s is %s: %s", decisions[deciding].Metric, decisions[deciding].Verdict, decisions[deciding].Reason)
	default:
		out.Action = Continue
		out.Reason = "all checks passed"
	}
	return out, next, nil
}
