package analysis

import "testing"

// A canary whose share of traffic never fills the recent window with
// MinSamples requests is judged on its cumulative sample instead: it can pass,
// and a clearly failing one still fails.
func TestErrorRateLowTrafficJudgedOnCumulative(t *testing.T) {
	cfg := Defaults()
	cfg.MaxErrorRate = 0.01
	cases := map[string]struct {
		recent, cumulative TrackSample
		want               Verdict
	}{
		"clean, recent window too small, cumulative enough":   {sample(30, 0), sample(400, 0), Pass},
		"failing, recent window too small, cumulative enough": {sample(30, 3), sample(400, 40), Fail},
		"clean, neither enough":                               {sample(30, 0), sample(40, 0), Inconclusive},
		"recent window enough: judged on it":                  {sample(500, 50), sample(5000, 50), Fail},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := checkErrorRate(tc.recent, tc.cumulative, cfg, zOneSided(cfg.RecentConfidence), zOneSided(cfg.Confidence))
			if d.Verdict != tc.want {
				t.Errorf("verdict %s (%s), want %s", d.Verdict, d.Reason, tc.want)
			}
		})
	}
}
