package analysis

import (
	"fmt"
	"time"
)

// effect is what one decision does to the outcome.
type effect int

const (
	effectPass effect = iota
	effectHold
	effectFail
	effectCritical
)

func (cfg Config) effectOf(d Decision) effect {
	switch d.Verdict {
	case Pass:
		return effectPass
	case Fail:
		if d.Critical {
			return effectCritical
		}
		return effectFail
	case NoData:
		switch cfg.NoData {
		case NoDataPass:
			return effectPass
		case NoDataFail:
			return effectFail
		}
	}
	return effectHold
}

// Evaluate judges one set of samples and returns the outcome and the state to persist for the next evaluation.
//
// The outcome is Rollback when any check fails (or lacks data under the Fail policy), Hold when a check is
// inconclusive or lacks data under the Hold policy, and Continue only when every check passes, on all load and,
// when in.Evidence is set, on the promotion evidence too (which can hold, never roll back). The
// error-controlled checks depend on the cumulative counts alone, so the outcome does not depend on state. It
// returns an error, and no outcome, for a Config that fails Validate or samples that cannot be true (more errors
// than requests, a non-finite custom value, a custom value without a check).
//
// The guarantee: if the canary's requests fail independently with probabilities within the ceiling and within
// the tolerance of the stable track's (and, with a latency ceiling and counts of slow requests, at most 1% of
// them are slower than it), the error-controlled checks fail at some evaluation, ever, with probability at most
// 1 − Confidence. Checks on gauges (a p99 without counts, custom metrics) are outside it and say so.
func Evaluate(state State, in Input, cfg Config, now time.Time) (Outcome, State, error) {
	if err := cfg.Validate(); err != nil {
		return Outcome{}, state, fmt.Errorf("invalid analysis config: %w", err)
	}
	if err := validateInput(in); err != nil {
		return Outcome{}, state, fmt.Errorf("invalid analysis input: %w", err)
	}
	checked := make(map[string]bool, len(cfg.Custom))
	for _, c := range cfg.Custom {
		checked[c.Name] = true
	}
	for _, s := range in.Custom {
		if !checked[s.Name] {
			return Outcome{}, state, fmt.Errorf("invalid analysis input: custom sample %q has no check in the config", s.Name)
		}
	}

	out := evaluate(in, cfg, true)
	if out.Action == Continue && in.Evidence != nil {
		// Only a hold can come of the evidence: the guarantee against false rollbacks rests on the checks of all
		// load above, which alone may roll back.
		ev := evaluate(Input{Recent: in.Recent, Cumulative: *in.Evidence, Custom: in.Custom}, cfg, true)
		if ev.Action != Continue {
			out.Action = Hold
			out.Reason = "promotion evidence (authenticated load, no identity above half) does not pass yet: " + ev.Reason
		}
	}
	next := State{LastEvaluated: state.LastEvaluated}
	if now.After(state.LastEvaluated) {
		next.LastEvaluated = now
	}
	return out, next, nil
}

// evaluate runs the checks on valid input. Without explain it leaves every Reason empty and skips the work that
// only the words need (the confidence bounds shown); the verdicts and the action are the same.
func evaluate(in Input, cfg Config, explain bool) Outcome {
	b := cfg.Budget()
	decisions := []Decision{checkCritical(in.Recent, in.Cumulative.Canary, cfg, b, explain)}
	if cfg.MaxErrorRate > 0 {
		decisions = append(decisions, checkErrorRate(in.Recent, in.Cumulative.Canary, cfg, b, explain))
	}
	decisions = append(decisions, checkVsStable(in.Cumulative, cfg, b, explain))
	if cfg.MaxLatencyP99 > 0 {
		decisions = append(decisions, checkLatency(in.Recent.Canary, in.Cumulative.Canary, cfg, b, explain))
	}
	decisions = append(decisions, checkCustom(cfg.Custom, in.Custom)...)

	worst, deciding := effectPass, -1
	for i, d := range decisions {
		if e := cfg.effectOf(d); e > worst {
			worst, deciding = e, i
		}
	}
	out := Outcome{Decisions: decisions}
	switch {
	case worst == effectCritical:
		out.Action = Rollback
		out.Reason = fmt.Sprintf("critical check %s failed: %s", decisions[deciding].Metric, decisions[deciding].Reason)
	case worst == effectFail:
		out.Action = Rollback
		out.Reason = fmt.Sprintf("%s failed: %s", decisions[deciding].Metric, decisions[deciding].Reason)
	case worst == effectHold:
		out.Action = Hold
		out.Reason = fmt.Sprintf("%s is %s: %s", decisions[deciding].Metric, decisions[deciding].Verdict, decisions[deciding].Reason)
	default:
		out.Action = Continue
		out.Reason = "all checks passed"
	}
	return out
}
