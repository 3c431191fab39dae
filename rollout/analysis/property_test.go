package analysis

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

var actionRank = map[Action]int{Continue: 0, Hold: 1, Rollback: 2}

var verdictRank = map[Verdict]int{Pass: 0, Inconclusive: 1, Fail: 2}

func drawConfig(t *rapid.T) Config {
	cfg := Defaults()
	cfg.MaxErrorRate = rapid.Float64Range(0, 0.5).Draw(t, "maxErrorRate")
	cfg.Confidence = rapid.Float64Range(0.6, 0.999).Draw(t, "confidence")
	cfg.MinSamples = rapid.Uint64Range(0, 200).Draw(t, "minSamples")
	cfg.CriticalErrorRate = rapid.Float64Range(0.01, 1).Draw(t, "criticalErrorRate")
	cfg.AbsoluteTolerance = rapid.Float64Range(0, 0.1).Draw(t, "absoluteTolerance")
	cfg.RelativeTolerance = rapid.Float64Range(0, 3).Draw(t, "relativeTolerance")
	return cfg
}

func drawSample(t *rapid.T, label string) TrackSample {
	n := rapid.Uint64Range(0, 100_000).Draw(t, label+"Requests")
	return TrackSample{Requests: n, Errors: rapid.Uint64Range(0, n).Draw(t, label+"Errors"), Present: true}
}

// More canary errors, with everything else equal, never makes any verdict or the outcome better.
func TestMoreCanaryErrorsNeverHelp(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := drawConfig(t)
		in := Input{
			Recent:     Tracks{Stable: drawSample(t, "recentStable"), Canary: drawSample(t, "recentCanary")},
			Cumulative: Tracks{Stable: drawSample(t, "cumStable"), Canary: drawSample(t, "cumCanary")},
		}
		worse := in
		worse.Recent.Canary.Errors += rapid.Uint64Range(0, in.Recent.Canary.Requests-in.Recent.Canary.Errors).Draw(t, "moreRecent")
		worse.Cumulative.Canary.Errors += rapid.Uint64Range(0, in.Cumulative.Canary.Requests-in.Cumulative.Canary.Errors).Draw(t, "moreCum")
		state := State{LastEvaluated: now.Add(-time.Second)}
		compareOutcomes(t, state, in, worse, cfg)
	})
}

// More stable errors, with everything else equal, never makes any verdict or the outcome worse.
func TestMoreStableErrorsNeverHurt(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := drawConfig(t)
		in := Input{
			Recent:     Tracks{Stable: drawSample(t, "recentStable"), Canary: drawSample(t, "recentCanary")},
			Cumulative: Tracks{Stable: drawSample(t, "cumStable"), Canary: drawSample(t, "cumCanary")},
		}
		better := in
		better.Cumulative.Stable.Errors += rapid.Uint64Range(0, in.Cumulative.Stable.Requests-in.Cumulative.Stable.Errors).Draw(t, "moreStable")
		state := State{LastEvaluated: now.Add(-time.Second)}
		compareOutcomes(t, state, better, in, cfg)
	})
}

// compareOutcomes fails unless worse is judged no better than better, check by check and overall.
func compareOutcomes(t *rapid.T, state State, better, worse Input, cfg Config) {
	ob, _, err := Evaluate(state, better, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	ow, _, err := Evaluate(state, worse, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	if actionRank[ow.Action] < actionRank[ob.Action] {
		t.Fatalf("worse input got %s (%s), better input got %s (%s)", ow.Action, ow.Reason, ob.Action, ob.Reason)
	}
	for i := range ob.Decisions {
		b, w := ob.Decisions[i], ow.Decisions[i]
		if b.Metric != w.Metric {
			t.Fatalf("decision %d: metric %s vs %s", i, b.Metric, w.Metric)
		}
		if verdictRank[w.Verdict] < verdictRank[b.Verdict] {
			t.Fatalf("%s: worse input %s (%s), better input %s (%s)", b.Metric, w.Verdict, w.Reason, b.Verdict, b.Reason)
		}
	}
}

// Evaluating the same instant twice, as a restarted controller may, gives the same outcome and state.
func TestReplayIsIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := drawConfig(t)
		in := Input{
			Recent:     Tracks{Stable: drawSample(t, "recentStable"), Canary: drawSample(t, "recentCanary")},
			Cumulative: Tracks{Stable: drawSample(t, "cumStable"), Canary: drawSample(t, "cumCanary")},
		}
		state := State{LastEvaluated: now.Add(-time.Second)}
		o1, s1, err := Evaluate(state, in, cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		o2, s2, err := Evaluate(s1, in, cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		if s1 != s2 || o1.Action != o2.Action {
			t.Fatalf("replay changed the result: %+v %s, then %+v %s", s1, o1.Action, s2, o2.Action)
		}
	})
}
