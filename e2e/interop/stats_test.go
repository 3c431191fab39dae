package interop

import (
	"math"
	"testing"
)

// binomialInterval returns the central interval [lo, hi] that holds a
// Binomial(n, p) count with probability at least conf (exact tails, each at
// most (1-conf)/2).
func binomialInterval(n int, p, conf float64) (lo, hi int) {
	tail := (1 - conf) / 2
	pmf := func(k int) float64 {
		lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
		if p == 0 {
			if k == 0 {
				return 1
			}
			return 0
		}
		return math.Exp(lg(n) - lg(k) - lg(n-k) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	cum := 0.0
	for lo = 0; lo <= n; lo++ {
		cum += pmf(lo)
		if cum > tail {
			break
		}
	}
	cum = 0
	for hi = n; hi >= 0; hi-- {
		cum += pmf(hi)
		if cum > tail {
			break
		}
	}
	return lo, hi
}

func TestBinomialInterval(t *testing.T) {
	cases := map[string]struct {
		n      int
		p      float64
		lo, hi int
	}{
		// Normal approximation: 500 ± 3.29·15.8 = [448, 552].
		"fair coin":              {1000, 0.5, 448, 552},
		"half a percent of 2000": {2000, 0.005, 2, 22},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			lo, hi := binomialInterval(tc.n, tc.p, 0.999)
			if lo < tc.lo-1 || lo > tc.lo+1 || hi < tc.hi-1 || hi > tc.hi+1 {
				t.Errorf("interval = [%d, %d], want about [%d, %d]", lo, hi, tc.lo, tc.hi)
			}
		})
	}
}
