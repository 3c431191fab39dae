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
// The outcome is Rollback when a critical check fails, or when an ordinary check (or missing data under the Fail
// policy) has failed in ConsecutiveFailures evaluations in a row; Hold when anything fails, is inconclusive or
// lacks data under the Hold policy; Continue only when every check passes. An evaluation at or before
// state.LastEvaluated does not change the failure count. It returns an error, and no outcome, for a Config that
// fails Validate or samples that cannot be true (more errors than requests, a non-finite custom value, a custom
// value without a check).
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

	z := zOneSided(cfg.Confidence)
	decisions := []Decision{checkCritical(in.Recent.Canary, cfg, z)}
	if cfg.MaxErrorRate > 0 {
		decisions = append(decisions, checkErrorRate(in.Recent.Canary, in.Cumulative.Canary, cfg, zOneSided(cfg.RecentConfidence), z))
	}
	decisions = append(decisions, checkVsStable(in.Cumulative, cfg, z))
	if cfg.MaxLatencyP99 > 0 {
		decisions = append(decisions, checkLatency(in.Recent.Canary, cfg))
	}
	decisions = append(decisions, checkCustom(cfg.Custom, in.Custom)...)

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
