package analysis

import (
	"fmt"
	"testing"
	"time"
)

// The guarantee, tested: with the defaults a rollout gets (95% confidence), a healthy canary is rolled back in at
// most 5% of rollouts, however long it is watched. Each case runs 1,000 seeded 10-minute rollouts with independent
// failures at the limits (the hardest healthy canaries) and fails above 65 rollbacks: if the true probability
// were 5%, more than 65 of 1,000 would happen with probability about 1.5%, while a rule without the guarantee
// (the fixed-sample checks this package had before measured 26-99% on these scenarios) fails by far.
func TestHealthyCanariesAreRarelyRolledBack(t *testing.T) {
	const rollouts, allowed = 1000, 65
	cases := []world{
		// Every limit at once: the canary at the 1% ceiling and 0.5 points above a 0.5% stable track.
		{canaryRPS: 20, stableRPS: 180, canaryErr: 0.01, stableErr: 0.005},
		// Just inside the ceiling, equal tracks.
		{canaryRPS: 20, stableRPS: 180, canaryErr: 0.009, stableErr: 0.009},
		// Just inside the tolerance, at low traffic.
		{canaryRPS: 5, stableRPS: 45, canaryErr: 0.009, stableErr: 0.005},
	}
	for _, w := range cases {
		name := fmt.Sprintf("canary %.3g%% vs stable %.3g%% at %d req/s", w.canaryErr*100, w.stableErr*100, w.canaryRPS)
		t.Run(name, func(t *testing.T) {
			w.length = 10 * time.Minute
			rolledBack := 0
			for i := range uint64(rollouts) {
				w.seed = 1 + i
				if at := run(w, []rule{sequentialRule{cfg: defaultConfig()}})[0]; at > 0 {
					rolledBack++
				}
			}
			t.Logf("%d of %d healthy rollouts rolled back (bound 5%%, failing above %d)", rolledBack, rollouts, allowed)
			if rolledBack > allowed {
				t.Errorf("%d of %d healthy canaries rolled back, want at most %d", rolledBack, rollouts, allowed)
			}
		})
	}
}

// Bad canaries are rolled back quickly: with the defaults, stable at 0.5% and the canary failing from the start,
// every one of 200 seeded rollouts is rolled back, within the stated time (a bound with room: the benchmark
// reports the distribution).
func TestBadCanariesAreRolledBack(t *testing.T) {
	cases := []struct {
		rps    int
		err    float64
		within time.Duration
	}{
		{rps: 20, err: 1, within: 2 * time.Second},
		{rps: 20, err: 0.2, within: 5 * time.Second},
		{rps: 10, err: 0.2, within: 10 * time.Second},
		{rps: 20, err: 0.05, within: time.Minute},
		{rps: 20, err: 0.02, within: 10 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%g%% errors at %d req/s", tc.err*100, tc.rps), func(t *testing.T) {
			var slowest int
			for i := range uint64(200) {
				w := world{canaryRPS: tc.rps, stableRPS: 9 * tc.rps, canaryErr: tc.err, stableErr: 0.005,
					length: 15 * time.Minute, seed: 5000 + i}
				at := run(w, []rule{sequentialRule{cfg: defaultConfig()}})[0]
				if at == 0 {
					t.Fatalf("seed %d: never rolled back in %v", w.seed, w.length)
				}
				slowest = max(slowest, at)
			}
			t.Logf("slowest of 200: %ds", slowest)
			if took := time.Duration(slowest) * time.Second; took > tc.within {
				t.Errorf("slowest rollback after %v, want within %v", took, tc.within)
			}
		})
	}
}
