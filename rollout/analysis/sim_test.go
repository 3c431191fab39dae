package analysis

import (
	"math"
	"math/rand/v2"
	"time"
)

// The simulator behind the fast guarantee test and the benchmark: seeded Bernoulli traffic, second by second, fed
// to several rules side by side on the same requests, the way the controller feeds the analysis (one evaluation a
// second, a 10 s recent window, counts since the canary began as the cumulative window).

// world is one simulated rollout's traffic.
type world struct {
	// canaryRPS and stableRPS are requests per second on each track.
	canaryRPS, stableRPS int
	// canaryErr and stableErr are the tracks' error probabilities per request.
	canaryErr, stableErr float64
	// faultAt and faultErr: from faultAt on, the canary fails with faultErr (0: never).
	faultAt  time.Duration
	faultErr float64
	// bursts, when set, are outages that hit both tracks at once: each second a burst starts with probability
	// burstStart, lasts burstLen seconds, and during it every request fails with burstErr. The error rates
	// outside bursts are lowered so that the long-run averages stay canaryErr and stableErr.
	bursts               bool
	burstStart, burstErr float64
	burstLen             int
	// length is how long the rollout runs; seed seeds its random source.
	length time.Duration
	seed   uint64
}

// second is one second of traffic.
type second struct{ cReq, cErr, sReq, sErr uint64 }

// rule is a rollback rule under test; it sees each second's Input and says whether it rolls back now.
type rule interface {
	observe(sec int, in Input, last second) bool
}

// run simulates w once and returns, per rule, the second (counted from 1) at which it rolled back, or 0 if it
// never did. Every rule sees the same requests.
func run(w world, rules []rule) []int {
	rng := newRNG(w.seed)
	out := make([]int, len(rules))
	alive := len(rules)
	const window = 10
	var ring [window]second
	var cum second
	burstLeft := 0
	base := func(p float64) float64 {
		if !w.bursts {
			return p
		}
		share := w.burstStart * float64(w.burstLen) // long-run share of seconds in a burst, about
		return max(0, (p-share*w.burstErr)/(1-share))
	}
	pc0, ps0 := base(w.canaryErr), base(w.stableErr)
	for s := 1; s <= int(w.length/time.Second) && alive > 0; s++ {
		pc, ps := pc0, ps0
		if w.faultErr > 0 && time.Duration(s)*time.Second > w.faultAt {
			pc = w.faultErr
		}
		if w.bursts {
			if burstLeft == 0 && rng.Float64() < w.burstStart {
				burstLeft = w.burstLen
			}
			if burstLeft > 0 {
				burstLeft--
				pc, ps = max(pc, w.burstErr), max(ps, w.burstErr)
			}
		}
		sec := second{cReq: uint64(w.canaryRPS), sReq: uint64(w.stableRPS)}
		sec.cErr = binomial(rng, w.canaryRPS, pc)
		sec.sErr = binomial(rng, w.stableRPS, ps)
		ring[s%window] = sec
		cum.cReq += sec.cReq
		cum.cErr += sec.cErr
		cum.sReq += sec.sReq
		cum.sErr += sec.sErr
		var recent second
		for _, r := range ring {
			recent.cReq += r.cReq
			recent.cErr += r.cErr
			recent.sReq += r.sReq
			recent.sErr += r.sErr
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
		for i, r := range rules {
			if out[i] == 0 && r.observe(s, in, sec) {
				out[i] = s
				alive--
			}
		}
	}
	return out
}

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// binomial draws the number of successes in n trials of probability p: by inversion of the CDF when the mean is
// small, else trial by trial.
func binomial(rng *rand.Rand, n int, p float64) uint64 {
	switch {
	case p <= 0 || n == 0:
		return 0
	case p >= 1:
		return uint64(n)
	case float64(n)*p < 20 && p < 0.2:
		q := 1 - p
		pmf := math.Pow(q, float64(n))
		u := rng.Float64()
		k := 0
		for cdf := pmf; u > cdf && k < n; cdf += pmf {
			pmf *= float64(n-k) / float64(k+1) * p / q
			k++
		}
		return uint64(k)
	}
	var k uint64
	for range n {
		if rng.Float64() < p {
			k++
		}
	}
	return k
}

// sequentialRule is this package's analysis with the given configuration.
type sequentialRule struct{ cfg Config }

func (r sequentialRule) observe(_ int, in Input, _ second) bool {
	return evaluate(in, r.cfg, false).Action == Rollback
}

// legacyRule is the analysis as it was before the sequential tests, with its state.
type legacyRule struct {
	cfg   legacyCfg
	state *legacyState
}

func newLegacyRule() legacyRule { return legacyRule{cfg: legacyConfig(), state: &legacyState{}} }

func (r legacyRule) observe(sec int, in Input, _ second) bool {
	out, next, err := legacyEvaluate(*r.state, in, r.cfg, simStart.Add(time.Duration(sec)*time.Second))
	if err != nil {
		panic(err)
	}
	*r.state = next
	return out.Action == Rollback
}

var simStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// flaggerRule is the rule of Flagger and Argo Rollouts: every interval, compare the canary's error rate over
// that interval with the ceiling, and roll back after n failing intervals in a row.
type flaggerRule struct {
	n, interval int
	ceiling     float64
	st          *flaggerState
}

type flaggerState struct {
	req, errs uint64
	failed    int
}

func newFlaggerRule(n int) flaggerRule {
	return flaggerRule{n: n, interval: 10, ceiling: 0.01, st: &flaggerState{}}
}

func (r flaggerRule) observe(sec int, _ Input, last second) bool {
	r.st.req += last.cReq
	r.st.errs += last.cErr
	if sec%r.interval != 0 {
		return false
	}
	bad := r.st.req > 0 && float64(r.st.errs) > r.ceiling*float64(r.st.req)
	r.st.req, r.st.errs = 0, 0
	if bad {
		r.st.failed++
	} else {
		r.st.failed = 0
	}
	return r.st.failed >= r.n
}

// oracleRule is Wald's one-sided SPRT of the canary's true faulty rate against the ceiling, on the counts since
// the fault began, stopping at 1/alpha: the fastest a test at level alpha can be when it knows the alternative.
type oracleRule struct {
	from      int // the first second of the fault
	alt, null float64
	alpha     float64
	st        *second
}

func (r oracleRule) observe(sec int, _ Input, last second) bool {
	if sec < r.from {
		return false
	}
	r.st.cReq += last.cReq
	r.st.cErr += last.cErr
	llr := float64(r.st.cErr)*math.Log(r.alt/r.null) + float64(r.st.cReq-r.st.cErr)*math.Log((1-r.alt)/(1-r.null))
	return llr >= -math.Log(r.alpha)
}

// defaultConfig mirrors rollout.AnalysisConfig(DefaultDelivery()): a 1% ceiling, 95% confidence, 100 requests
// before advancing, a 20% critical rate, and the tolerance of Defaults (0.5 points, or once the stable rate).
func defaultConfig() Config {
	cfg := Defaults()
	cfg.MaxErrorRate = 0.01
	cfg.Confidence = 0.95
	cfg.MinSamples = 100
	cfg.CriticalErrorRate = 0.2
	return cfg
}
