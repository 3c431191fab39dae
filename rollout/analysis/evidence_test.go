package analysis

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPromotionEvidence(t *testing.T) {
	cases := map[string]struct {
		in            []OriginSample
		want          Provenance
		wantDominated bool
	}{
		"nothing reported": {
			want: Provenance{Evidence: TrackSample{Present: true}},
		},
		"one identity counts whole and dominates": {
			in:            []OriginSample{{Identity: "token:web/frontend", Requests: 1000, Errors: 3}},
			want:          Provenance{Requests: 1000, Identities: 1, Top: "token:web/frontend", TopRequests: 1000, Evidence: sample(1000, 3)},
			wantDominated: true,
		},
		"legacy load is never evidence": {
			in: []OriginSample{
				{Identity: "legacy:shop", Legacy: true, Requests: 5000},
				{Identity: "token:web/frontend", Requests: 100, Errors: 1},
			},
			want: Provenance{Requests: 5100, LegacyRequests: 5000, Identities: 1, Top: "token:web/frontend", TopRequests: 100,
				Evidence: sample(100, 1)},
			wantDominated: true, // the only authenticated identity supplied all of the evidence
		},
		"a dominating identity counts as much as the others together, at its own error rate": {
			in: []OriginSample{
				{Identity: "token:web/flood", Requests: 1_000_000, Errors: 1},
				{Identity: "token:web/frontend", Requests: 60, Errors: 6},
				{Identity: "token:web/batch", Requests: 40, Errors: 4},
			},
			// flood: 100 of 1,000,000 requests, errors ⌈1 × 100 / 1,000,000⌉ = 1.
			want: Provenance{Requests: 1_000_100, Identities: 3, Top: "token:web/flood", TopRequests: 1_000_000,
				Evidence: sample(200, 11)},
			wantDominated: true,
		},
		"balanced identities count whole": {
			in: []OriginSample{
				{Identity: "token:web/a", Requests: 500, Errors: 5},
				{Identity: "token:web/b", Requests: 500, Errors: 1},
			},
			want: Provenance{Requests: 1000, Identities: 2, Top: "token:web/a", TopRequests: 500, Evidence: sample(1000, 6)},
		},
		"counts at the limit do not overflow": {
			in: []OriginSample{
				{Identity: "token:web/a", Requests: math.MaxUint64, Errors: math.MaxUint64},
				{Identity: "token:web/b", Requests: 1 << 40, Errors: 1},
			},
			// a: 2^40 of 2^64-1 requests, errors ⌈(2^64-1) × 2^40 / (2^64-1)⌉ = 2^40.
			want: Provenance{Requests: math.MaxUint64, Identities: 2, Top: "token:web/a", TopRequests: math.MaxUint64,
				Evidence: sample(1<<41, 1<<40+1)},
			wantDominated: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := PromotionEvidence(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("provenance (-want +got):\n%s", diff)
			}
			if got.Dominated() != tc.wantDominated {
				t.Fatalf("Dominated() = %v, want %v", got.Dominated(), tc.wantDominated)
			}
			if e := got.Evidence; e.Errors > e.Requests {
				t.Fatalf("evidence has %d errors out of %d requests", e.Errors, e.Requests)
			}
		})
	}
}

// withEvidence is in with the promotion evidence of the given origins per track.
func withEvidence(in Input, stable, canary []OriginSample) Input {
	in.Evidence = &Tracks{Stable: PromotionEvidence(stable).Evidence, Canary: PromotionEvidence(canary).Evidence}
	return in
}

// TestEvidenceHoldsNeverRollsBack plays the origins of load against the analysis: load that cannot promote
// (legacy, or dwarfed by one identity) holds a healthy canary, and the errors of any single origin, legacy
// included, still roll a bad one back.
func TestEvidenceHoldsNeverRollsBack(t *testing.T) {
	cfg := Defaults()
	cfg.MaxErrorRate = 0.01
	stable := []OriginSample{{Identity: "token:web/frontend", Requests: 10_000, Errors: 10}}
	cases := map[string]struct {
		canary     []OriginSample
		wantAction Action
		wantReason string
	}{
		"a healthy canary reported by one authenticated caller advances": {
			canary:     []OriginSample{{Identity: "token:web/frontend", Requests: 2000, Errors: 1}},
			wantAction: Continue,
		},
		"a healthy canary reported only over the legacy listener holds": {
			canary:     []OriginSample{{Identity: "legacy:shop", Legacy: true, Requests: 100_000}},
			wantAction: Hold,
			wantReason: "promotion evidence",
		},
		"legacy successes cannot dilute authenticated errors into an advance": {
			canary: []OriginSample{
				{Identity: "legacy:shop", Legacy: true, Requests: 1_000_000},
				{Identity: "token:web/frontend", Requests: 2000, Errors: 200},
			},
			wantAction: Hold,
			wantReason: "promotion evidence",
		},
		"one identity's flood of successes cannot carry the others' errors": {
			canary: []OriginSample{
				{Identity: "token:web/flood", Requests: 1_000_000},
				{Identity: "token:web/frontend", Requests: 2000, Errors: 200},
			},
			wantAction: Hold,
			wantReason: "promotion evidence",
		},
		"a legacy caller's errors roll a bad canary back": {
			canary: []OriginSample{
				{Identity: "legacy:shop", Legacy: true, Requests: 2000, Errors: 600},
				{Identity: "token:web/frontend", Requests: 50},
			},
			wantAction: Rollback,
		},
		"a single caller's errors roll a bad canary back": {
			canary:     []OriginSample{{Identity: "token:web/frontend", Requests: 2000, Errors: 300}},
			wantAction: Rollback,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			all := func(os []OriginSample) TrackSample {
				var s TrackSample
				for _, o := range os {
					s.Requests += o.Requests
					s.Errors += o.Errors
				}
				s.Present = true
				return s
			}
			in := withEvidence(Input{Cumulative: Tracks{Stable: all(stable), Canary: all(tc.canary)}}, stable, tc.canary)
			out, _, err := Evaluate(State{}, in, cfg, now)
			if err != nil {
				t.Fatal(err)
			}
			if out.Action != tc.wantAction || !strings.Contains(out.Reason, tc.wantReason) {
				t.Fatalf("action %s (%s), want %s with a reason naming %q", out.Action, out.Reason, tc.wantAction, tc.wantReason)
			}
		})
	}
}
