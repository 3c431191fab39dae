package analysis

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sample(requests, errors uint64) TrackSample {
	return TrackSample{Requests: requests, Errors: errors, Present: true}
}

func both(stable, canary TrackSample) Input {
	t := Tracks{Stable: stable, Canary: canary}
	return Input{Recent: t, Cumulative: t}
}

func ptr[T any](v T) *T { return &v }

func TestEvaluate(t *testing.T) {
	base := Defaults()
	base.MaxErrorRate = 0.01
	withLatency := base
	withLatency.MaxLatencyP99 = 300 * time.Millisecond
	noDataFail := base
	noDataFail.NoData = NoDataFail
	noDataPass := base
	noDataPass.NoData = NoDataPass
	custom := base
	custom.Custom = []CustomCheck{
		{Name: "saturation", Max: ptr(0.8)},
		{Name: "conversions", Min: ptr(0.02), Critical: true},
	}
	failing := both(sample(10_000, 10), sample(1_000, 40)) // 4% against a 1% ceiling and 0.1% stable

	cases := map[string]struct {
		state      State
		in         Input
		cfg        Config
		wantAction Action
		// wantVerdicts maps metric to verdict for the decisions the case is about.
		wantVerdicts map[string]Verdict
		wantReason   string
	}{
		"clean canary continues": {
			in: both(sample(10_000, 10), sample(1_000, 1)), cfg: base, wantAction: Continue,
			wantVerdicts: map[string]Verdict{MetricCriticalErrorRate: Pass, MetricErrorRate: Pass, MetricErrorRateVsStable: Pass},
			wantReason:   "all checks passed",
		},
		"too few canary requests holds": {
			in: both(sample(10_000, 10), sample(20, 0)), cfg: base, wantAction: Hold,
			wantVerdicts: map[string]Verdict{MetricErrorRate: Inconclusive, MetricErrorRateVsStable: Inconclusive},
			wantReason:   "20 of the 50 requests needed to advance",
		},
		"too few canary requests still fail": {
			in: both(sample(10_000, 10), sample(20, 8)), cfg: base, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricErrorRate: Fail, MetricErrorRateVsStable: Fail},
			wantReason:   "error rate 40% (8/20), at least",
		},
		"no canary traffic holds": {
			in: both(sample(10_000, 10), sample(0, 0)), cfg: base, wantAction: Hold,
			wantVerdicts: map[string]Verdict{MetricCriticalErrorRate: Inconclusive},
		},
		"a failure rolls back at once": {
			in: failing, cfg: base, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricErrorRate: Fail, MetricErrorRateVsStable: Fail},
			wantReason:   "error-rate failed: error rate 4% (40/1000), at least",
		},
		"a late fault in the recent window fails": {
			in: Input{
				Recent:     Tracks{Stable: sample(1_800, 9), Canary: sample(200, 40)},
				Cumulative: Tracks{Stable: sample(108_000, 540), Canary: sample(12_000, 100)},
			},
			cfg: base, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricErrorRate: Fail, MetricCriticalErrorRate: Pass},
			wantReason:   "error rate 20% (40/200) in the recent window, at least",
		},
		"an outage of both tracks in the recent window is not the canary's": {
			in: Input{
				Recent:     Tracks{Stable: sample(1_800, 360), Canary: sample(200, 40)},
				Cumulative: Tracks{Stable: sample(108_000, 900), Canary: sample(12_000, 100)},
			},
			cfg: base, wantAction: Continue,
			wantVerdicts: map[string]Verdict{MetricErrorRate: Pass},
		},
		"all errors are critical": {
			in: both(sample(10_000, 10), sample(30, 30)), cfg: base, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricCriticalErrorRate: Fail},
			wantReason:   "critical check critical-error-rate failed",
		},
		"one error in one request is not critical": {
			in: both(sample(10_000, 10), sample(1, 1)), cfg: base, wantAction: Hold,
			wantVerdicts: map[string]Verdict{MetricCriticalErrorRate: Pass},
		},
		"canary 0.5% against stable 0.5% is no worse": {
			in: both(sample(100_000, 500), sample(20_000, 100)), cfg: base, wantAction: Continue,
			wantVerdicts: map[string]Verdict{MetricErrorRateVsStable: Pass},
		},
		"canary 2% against stable 0.1% fails the comparison": {
			in: both(sample(100_000, 100), sample(2_000, 40)), cfg: Defaults(), wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricErrorRate: Pass, MetricErrorRateVsStable: Fail},
		},
		"source failure under Hold says so": {
			in: Input{Recent: Tracks{Stable: sample(100, 0), Canary: TrackSample{Problem: "connection refused", SourceFailed: true}},
				Cumulative: Tracks{Stable: sample(100, 0), Canary: TrackSample{Problem: "connection refused", SourceFailed: true}}},
			cfg: base, wantAction: Hold,
			wantVerdicts: map[string]Verdict{MetricCriticalErrorRate: NoData, MetricErrorRate: NoData, MetricErrorRateVsStable: NoData},
			wantReason:   "source failed: connection refused",
		},
		"empty source under Fail counts as a failure": {
			in: Input{Recent: Tracks{Stable: sample(100, 0), Canary: TrackSample{Problem: "empty result"}},
				Cumulative: Tracks{Stable: sample(100, 0), Canary: TrackSample{Problem: "empty result"}}},
			cfg: noDataFail, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricErrorRate: NoData},
			wantReason:   "source returned no data: empty result",
		},
		"missing stable under Pass continues": {
			in:  Input{Recent: Tracks{Canary: sample(1_000, 0)}, Cumulative: Tracks{Canary: sample(1_000, 0)}},
			cfg: noDataPass, wantAction: Continue,
			wantVerdicts: map[string]Verdict{MetricErrorRateVsStable: NoData},
		},
		"slow canary fails latency": {
			in: func() Input {
				in := both(sample(10_000, 10), sample(1_000, 1))
				in.Recent.Canary.LatencyP99 = ptr(450 * time.Millisecond)
				return in
			}(),
			cfg: withLatency, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricLatencyP99: Fail},
			wantReason:   "p99 450ms over 1000 recent requests; limit 300ms (a p99 gauge: not error-controlled)",
		},
		"counted slow requests fail latency sequentially": {
			in: func() Input {
				in := both(sample(10_000, 10), sample(1_000, 1))
				in.Cumulative.Canary.SlowRequests = ptr(uint64(60))
				return in
			}(),
			cfg: withLatency, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricLatencyP99: Fail},
			wantReason:   "share slower than 300ms 6% (60/1000), at least",
		},
		"slow requests counted at a bucket above the limit say so": {
			in: func() Input {
				in := both(sample(10_000, 10), sample(1_000, 1))
				in.Cumulative.Canary.SlowRequests = ptr(uint64(60))
				in.Cumulative.Canary.SlowerThan = 500 * time.Millisecond
				return in
			}(),
			cfg: withLatency, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{MetricLatencyP99: Fail},
			wantReason:   "share slower than 500ms 6% (60/1000), at least 3.23% with 99% confidence; limit 1% (p99 300ms, counted at the histogram bucket 500ms)",
		},
		"counted slow requests within 1% pass": {
			in: func() Input {
				in := both(sample(10_000, 10), sample(1_000, 1))
				in.Cumulative.Canary.SlowRequests = ptr(uint64(5))
				return in
			}(),
			cfg: withLatency, wantAction: Continue,
			wantVerdicts: map[string]Verdict{MetricLatencyP99: Pass},
		},
		"latency without a latency source is no data": {
			in: both(sample(10_000, 10), sample(1_000, 1)), cfg: withLatency, wantAction: Hold,
			wantVerdicts: map[string]Verdict{MetricLatencyP99: NoData},
			wantReason:   "no latency data",
		},
		"custom metric above its maximum fails": {
			in: func() Input {
				in := both(sample(10_000, 10), sample(1_000, 1))
				in.Custom = []CustomSample{{Name: "saturation", Value: 0.9, Present: true}, {Name: "conversions", Value: 0.05, Present: true}}
				return in
			}(),
			cfg: custom, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{"custom:saturation": Fail, "custom:conversions": Pass},
		},
		"critical custom metric below its minimum rolls back": {
			in: func() Input {
				in := both(sample(10_000, 10), sample(1_000, 1))
				in.Custom = []CustomSample{{Name: "saturation", Value: 0.1, Present: true}, {Name: "conversions", Value: 0.001, Present: true}}
				return in
			}(),
			cfg: custom, wantAction: Rollback,
			wantVerdicts: map[string]Verdict{"custom:conversions": Fail},
			wantReason:   "below the minimum 0.02",
		},
		"custom metric without a value is no data": {
			in: both(sample(10_000, 10), sample(1_000, 1)), cfg: custom, wantAction: Hold,
			wantVerdicts: map[string]Verdict{"custom:conversions": NoData, "custom:saturation": NoData},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, next, err := Evaluate(tc.state, tc.in, tc.cfg, now)
			if err != nil {
				t.Fatal(err)
			}
			if out.Action != tc.wantAction {
				t.Errorf("action = %s, want %s (reason: %s)", out.Action, tc.wantAction, out.Reason)
			}
			if !next.LastEvaluated.Equal(now) {
				t.Errorf("next state = %+v, want the evaluation's time", next)
			}
			for _, d := range out.Decisions {
				if len(d.Reason) > 512 {
					t.Errorf("%s: reason of %d bytes, want at most 512", d.Metric, len(d.Reason))
				}
			}
			if !strings.Contains(out.Reason, tc.wantReason) {
				t.Errorf("reason %q does not contain %q", out.Reason, tc.wantReason)
			}
			got := map[string]Verdict{}
			for _, d := range out.Decisions {
				if _, ok := tc.wantVerdicts[d.Metric]; ok {
					got[d.Metric] = d.Verdict
				}
			}
			if len(tc.wantVerdicts) == 0 {
				return
			}
			if diff := cmp.Diff(tc.wantVerdicts, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s\nall decisions: %+v", diff, out.Decisions)
			}
		})
	}
}

func TestEvaluateDecisionRecord(t *testing.T) {
	cfg := Defaults()
	cfg.MaxErrorRate = 0.01
	cfg.MaxLatencyP99 = time.Second
	cfg.Custom = []CustomCheck{{Name: "b", Max: ptr(1.0)}, {Name: "a", Min: ptr(0.0)}}
	in := both(sample(10_000, 10), sample(1_000, 40))
	in.Recent.Canary.LatencyP99 = ptr(200 * time.Millisecond)
	in.Custom = []CustomSample{{Name: "b", Value: 0.5, Present: true}, {Name: "a", Value: 3, Present: true}}
	out, _, err := Evaluate(State{}, in, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		Metric    string
		Value     float64
		Threshold float64
		Samples   uint64
		Verdict   Verdict
		Critical  bool
	}
	var got []rec
	for _, d := range out.Decisions {
		got = append(got, rec{d.Metric, d.Value, d.Threshold, d.Samples, d.Verdict, d.Critical})
		if d.Reason == "" {
			t.Errorf("%s has no reason", d.Metric)
		}
	}
	want := []rec{
		{MetricCriticalErrorRate, 0.04, 0.5, 1000, Pass, true},
		{MetricErrorRate, 0.04, 0.01, 1000, Fail, false},
		{MetricErrorRateVsStable, 0.039, 0.005, 1000, Fail, false},
		{MetricLatencyP99, 0.2, 1, 1000, Pass, false},
		{"custom:a", 3, 0, 0, Pass, false},
		{"custom:b", 0.5, 1, 0, Pass, false},
	}
	approx := cmp.Comparer(func(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 })
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
}

func TestEvaluateRejectsBadInput(t *testing.T) {
	cases := map[string]struct {
		in   Input
		cfg  Config
		want string
	}{
		"more errors than requests": {in: both(sample(10, 0), sample(5, 6)), cfg: Defaults(), want: "6 errors out of 5 requests"},
		"confidence out of range": {in: both(sample(10, 0), sample(5, 0)), cfg: func() Config { c := Defaults(); c.Confidence = 1; return c }(),
			want: "confidence 1: want a value in (0.5, 1)"},
		"unknown no-data policy": {in: both(sample(10, 0), sample(5, 0)), cfg: func() Config { c := Defaults(); c.NoData = "Ignore"; return c }(),
			want: `noData "Ignore"`},
		"custom check without bounds": {in: both(sample(10, 0), sample(5, 0)), cfg: func() Config { c := Defaults(); c.Custom = []CustomCheck{{Name: "x"}}; return c }(),
			want: "set min, max or both"},
		"custom sample without a check": {in: func() Input {
			in := both(sample(10, 0), sample(5, 0))
			in.Custom = []CustomSample{{Name: "orphan", Present: true}}
			return in
		}(), cfg: Defaults(), want: `"orphan" has no check`},
		"zero config": {in: both(sample(10, 0), sample(5, 0)), cfg: Config{}, want: "confidence 0"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			state := State{LastEvaluated: now.Add(-time.Second)}
			_, next, err := Evaluate(state, tc.in, tc.cfg, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
			if next != state {
				t.Errorf("state changed on error: %+v", next)
			}
		})
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults() does not validate: %v", err)
	}
}
