package analysis

import (
	"math"
	"testing"

	"pgregory.net/rapid"
)

func TestZOneSided(t *testing.T) {
	for conf, want := range map[float64]float64{0.95: 1.644854, 0.975: 1.959964, 0.99: 2.326348, 0.999: 3.090232} {
		if got := zOneSided(conf); math.Abs(got-want) > 1e-5 {
			t.Errorf("zOneSided(%v) = %v, want %v", conf, got, want)
		}
	}
}

// The expected intervals are the published ones: Wilson (1927) as tabulated by Newcombe (1998a), and the hybrid
// score intervals of Newcombe (1998b), Table II, examples (a) and (b), all at 95% two-sided (z = 1.96).
func TestIntervalsMatchPublishedValues(t *testing.T) {
	const z = 1.959964
	cases := map[string]struct {
		got, want interval
	}{
		"wilson 0/10":          {got: wilson(0, 10, z), want: interval{0, 0.2775}},
		"wilson 5/10":          {got: wilson(5, 10, z), want: interval{0.2366, 0.7634}},
		"wilson 10/10":         {got: wilson(10, 10, z), want: interval{0.7225, 1}},
		"wilson 0/0":           {got: wilson(0, 0, z), want: interval{0, 1}},
		"newcombe 56/70-48/80": {got: newcombe(56, 70, 48, 80, z), want: interval{0.0524, 0.3339}},
		"newcombe 9/10-3/10":   {got: newcombe(9, 10, 3, 10, z), want: interval{0.1705, 0.8090}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if math.Abs(tc.got.lo-tc.want.lo) > 1e-4 || math.Abs(tc.got.hi-tc.want.hi) > 1e-4 {
				t.Errorf("got [%.4f, %.4f], want [%.4f, %.4f]", tc.got.lo, tc.got.hi, tc.want.lo, tc.want.hi)
			}
		})
	}
}

func TestIntervalsContainTheEstimate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n1 := rapid.Uint64Range(0, 1_000_000).Draw(t, "n1")
		k1 := rapid.Uint64Range(0, n1).Draw(t, "k1")
		n2 := rapid.Uint64Range(0, 1_000_000).Draw(t, "n2")
		k2 := rapid.Uint64Range(0, n2).Draw(t, "k2")
		z := zOneSided(rapid.Float64Range(0.6, 0.9999).Draw(t, "confidence"))
		const eps = 1e-12
		w := wilson(k1, n1, z)
		if p := rate(k1, n1); n1 > 0 && (w.lo < 0 || w.hi > 1 || w.lo > p+eps || w.hi < p-eps) {
			t.Fatalf("wilson(%d, %d) = %+v does not contain %v within [0, 1]", k1, n1, w, p)
		}
		d := newcombe(k1, n1, k2, n2, z)
		if diff := rate(k1, n1) - rate(k2, n2); d.lo < -1 || d.hi > 1 || d.lo > diff+eps || d.hi < diff-eps {
			t.Fatalf("newcombe = %+v does not contain %v within [-1, 1]", d, diff)
		}
	})
}
