package analysis

import (
	"math/rand/v2"
	"testing"
	"time"
)

// traffic describes one simulated rollout: per-second request rates of both tracks, their error probabilities,
// and when (if ever) the canary's error probability changes.
type traffic struct {
	canaryRPS, stableRPS int
	canaryErr, stableErr float64
	faultAt              time.Duration // the canary errs at faultErr from this offset on; 0 with faultErr 0: never
	faultErr             float64
	recentWindow, runFor time.Duration
	seed                 uint64
	cfg                  Config
}

// simResult says whether and when the simulated rollout was rolled back, and on what.
type simResult struct {
	rolledBack bool
	at         time.Duration
	reason     string
}

// simulate generates Bernoulli traffic second by second and runs Evaluate once per simulated second, passing a
// trailing window of recentWindow as Recent and everything since the start as Cumulative, and persisting State
// the way the controller does.
func simulate(t *testing.T, tr traffic) simResult {
	t.Helper()
	rng := rand.New(rand.NewPCG(tr.seed, tr.seed^0x9e3779b97f4a7c15))
	type second struct{ cReq, cErr, sReq, sErr uint64 }
	var history []second
	var cum second
	var state State
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	windowSeconds := int(tr.recentWindow / time.Second)
	for s := 1; s <= int(tr.runFor/time.Second); s++ {
		elapsed := time.Duration(s) * time.Second
		pc := tr.canaryErr
		if tr.faultErr > 0 && elapsed > tr.faultAt {
			pc = tr.faultErr
		}
		var sec second
		sec.cReq, sec.sReq = uint64(tr.canaryRPS), uint64(tr.stableRPS)
		sec.cErr = bernoulli(rng, tr.canaryRPS, pc)
		sec.sErr = bernoulli(rng, tr.stableRPS, tr.stableErr)
		history = append(history, sec)
		cum.cReq += sec.cReq
		cum.cErr += sec.cErr
		cum.sReq += sec.sReq
		cum.sErr += sec.sErr
		var recent second
		for _, h := range history[max(0, len(history)-windowSeconds):] {
			recent.cReq += h.cReq
			recent.cErr += h.cErr
			recent.sReq += h.sReq
			recent.sErr += h.sErr
		}
		in := Input{
			Recent: Tracks{
				Stable: TrackSample{Requests: recent.sReq, Errors: recent.sErr, Present: true},
				Canary: TrackSample{Requests: recent.cReq, Errors: recent.cErr, Present: true},
			},
			Cumulative: Tracks{
				Stable: TrackSample{Requests: cum.sReq, Errors: cum.sErr, Present: true},
				Canary: TrackSample{Requests: cum.cReq, Errors: cum.cErr, Present: true},
			},
		}
		out, next, err := Evaluate(state, in, tr.cfg, start.Add(elapsed))
		if err != nil {
			t.Fatalf("evaluate at %v: %v", elapsed, err)
		}
		state = next
		if out.Action == Rollback {
			return simResult{rolledBack: true, at: elapsed, reason: out.Reason}
		}
	}
	return simResult{}
}

func bernoulli(rng *rand.Rand, n int, p float64) uint64 {
	var k uint64
	for range n {
		if rng.Float64() < p {
			k++
		}
	}
	return k
}

// simConfig is the configuration the simulations run with: the defaults with the 1% ceiling of the design's
// annotation example, the tightest common setting against 0.5% noise.
func simConfig() Config {
	cfg := Defaults()
	cfg.MaxErrorRate = 0.01
	return cfg
}

func TestSimulationFastRollback(t *testing.T) {
	cases := map[string]struct {
		tr     traffic
		budget time.Duration // every run rolls back within this time from fault onset
		// target is the tighter goal (15 s); at least share of the runs must meet it. A 5% fault at 10 req/s
		// gives about 7 errors in 15 s, too few for every run to be judged at 99% confidence in time.
		target time.Duration
		share  float64
	}{
		"20% errors at 10 req/s from the start": {
			tr:     traffic{canaryRPS: 10, stableRPS: 90, canaryErr: 0.2, stableErr: 0.005},
			budget: 15 * time.Second,
		},
		"20% errors at 10 req/s after a clean minute": {
			tr:     traffic{canaryRPS: 10, stableRPS: 90, canaryErr: 0.005, stableErr: 0.005, faultAt: time.Minute, faultErr: 0.2},
			budget: 15 * time.Second,
		},
		"5% errors at 10 req/s from the start": {
			tr:     traffic{canaryRPS: 10, stableRPS: 90, canaryErr: 0.05, stableErr: 0.001},
			budget: 30 * time.Second,
			target: 15 * time.Second,
			share:  0.9,
		},
		"100% errors at 10 req/s from the start": {
			tr:     traffic{canaryRPS: 10, stableRPS: 90, canaryErr: 1, stableErr: 0.005},
			budget: 2 * time.Second,
		},
		"100% errors at 10 req/s after a clean minute": {
			tr:     traffic{canaryRPS: 10, stableRPS: 90, canaryErr: 0.005, stableErr: 0.005, faultAt: time.Minute, faultErr: 1},
			budget: 5 * time.Second,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			const runs = 50
			var worst time.Duration
			metTarget := 0
			for seed := range uint64(runs) {
				tr := tc.tr
				tr.seed, tr.cfg = seed+1, simConfig()
				tr.recentWindow, tr.runFor = 10*time.Second, tr.faultAt+2*time.Minute
				res := simulate(t, tr)
				if !res.rolledBack {
					t.Fatalf("seed %d: never rolled back", tr.seed)
				}
				took := res.at - tr.faultAt
				if took <= 0 {
					t.Fatalf("seed %d: rolled back at %v, before the fault at %v: %s", tr.seed, res.at, tr.faultAt, res.reason)
				}
				worst = max(worst, took)
				if took <= tc.target {
					metTarget++
				}
				if took > tc.budget {
					t.Errorf("seed %d: rolled back %v after the fault, budget %v: %s", tr.seed, took, tc.budget, res.reason)
				}
			}
			t.Logf("slowest of %d runs: rolled back %v after fault onset", runs, worst)
			if tc.target > 0 {
				t.Logf("%d of %d runs rolled back within %v", metTarget, runs, tc.target)
				if got := float64(metTarget) / runs; got < tc.share {
					t.Errorf("%.0f%% of runs rolled back within %v, want at least %.0f%%", got*100, tc.target, tc.share*100)
				}
			}
		})
	}
}

func TestSimulationSmallRegressionIsCaught(t *testing.T) {
	const runs = 50
	var worst time.Duration
	for seed := range uint64(runs) {
		res := simulate(t, traffic{
			canaryRPS: 20, stableRPS: 180, canaryErr: 0.02, stableErr: 0.001,
			recentWindow: 10 * time.Second, runFor: 5 * time.Minute, seed: seed + 1, cfg: simConfig(),
		})
		if !res.rolledBack {
			t.Errorf("seed %d: 2%% canary errors against 0.1%% stable never rolled back in 5 minutes", seed+1)
			continue
		}
		worst = max(worst, res.at)
		if res.at > 3*time.Minute {
			t.Errorf("seed %d: rolled back only after %v", seed+1, res.at)
		}
	}
	t.Logf("slowest of %d runs: rolled back after %v", runs, worst)
}

func TestSimulationNoiseIsNotRolledBack(t *testing.T) {
	if testing.Short() {
		t.Skip("200 simulated rollouts of 5 minutes each")
	}
	cases := map[string]struct{ canaryRPS, stableRPS int }{
		"canary 10 req/s": {canaryRPS: 10, stableRPS: 90},
		"canary 20 req/s": {canaryRPS: 20, stableRPS: 180},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			const runs, allowed = 200, 2
			rolledBack := 0
			for seed := range uint64(runs) {
				res := simulate(t, traffic{
					canaryRPS: tc.canaryRPS, stableRPS: tc.stableRPS, canaryErr: 0.005, stableErr: 0.005,
					recentWindow: 10 * time.Second, runFor: 5 * time.Minute, seed: seed + 1000, cfg: simConfig(),
				})
				if res.rolledBack {
					rolledBack++
					t.Logf("seed %d: false rollback at %v: %s", seed+1000, res.at, res.reason)
				}
			}
			t.Logf("false rollbacks: %d of %d clean rollouts (0.5%% errors on both tracks, 5 minutes each)", rolledBack, runs)
			if rolledBack > allowed {
				t.Errorf("%d false rollbacks in %d clean rollouts, want at most %d", rolledBack, runs, allowed)
			}
		})
	}
}
