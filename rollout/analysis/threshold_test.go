package analysis

import (
	"math/rand/v2"
	"testing"
)

func TestRateVerdict(t *testing.T) {
	cases := map[string]struct {
		errors, requests uint64
		want             Verdict
	}{
		"no requests":         {0, 0, NoData},
		"few, one error":      {1, 20, Inconclusive},
		"clearly above 1%":    {200, 1000, Fail},
		"clearly below 1%":    {0, 5000, Pass},
		"just above, small n": {2, 100, Inconclusive},
		"impossible counts":   {5, 1, Inconclusive},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := RateVerdict(c.errors, c.requests, 0.01, 0.01); got != c.want {
				t.Errorf("RateVerdict(%d, %d, 1%%) = %s, want %s", c.errors, c.requests, got, c.want)
			}
		})
	}
}

// TestRateVerdictRepeatedLooksStayWithinAlpha: a dependency failing exactly
// at the limit, judged after every 50 requests up to 20,000, is called
// failing in at most about alpha of 400 seeded runs; a line at the limit
// would alarm in most of them.
func TestRateVerdictRepeatedLooksStayWithinAlpha(t *testing.T) {
	const runs, limit, alpha = 400, 0.02, 0.05
	var alarms, lineAlarms int
	for seed := range uint64(runs) {
		r := rand.New(rand.NewPCG(seed, 7))
		var k, n uint64
		alarmed, lined := false, false
		for n < 20_000 {
			for range 50 {
				n++
				if r.Float64() < limit {
					k++
				}
			}
			if !alarmed && RateVerdict(k, n, limit, alpha) == Fail {
				alarmed = true
			}
			if !lined && n >= 100 && float64(k)/float64(n) > limit {
				lined = true
			}
		}
		if alarmed {
			alarms++
		}
		if lined {
			lineAlarms++
		}
	}
	t.Logf("%d runs at the limit: %d false alarms from the verdict, %d from a line", runs, alarms, lineAlarms)
	// Binomial(400, 0.05): mean 20, sd 4.4; 40 is 4.5 sd above.
	if alarms > 40 {
		t.Errorf("%d of %d runs at the limit alarmed, want about at most %.0f", alarms, runs, alpha*runs)
	}
	if lineAlarms < runs/2 {
		t.Errorf("a raw line alarmed in only %d of %d runs: the comparison shows nothing", lineAlarms, runs)
	}
}
