package analysis

import (
	"math"
	"testing"

	"pgregory.net/rapid"
)

// The mixture test at the boundary of its null: over 2,000 seeded sequences of 5,000 requests failing with
// exactly the tested rate, looked at every 25 requests, the share that ever rejects stays below alpha (10%),
// as Ville's inequality promises. A test without the guarantee (a fixed-sample bound looked at 200 times) would
// reject most of them.
func TestMixtureRejectsTrueNullRarely(t *testing.T) {
	const paths, requests, every, alpha, p0 = 2000, 5000, 25, 0.1, 0.05
	m := mixtureAbove(p0)
	rng := newRNG(11)
	rejected := 0
	for range paths {
		var k uint64
		for n := uint64(1); n <= requests; n++ {
			if rng.Float64() < p0 {
				k++
			}
			if n%every == 0 && m.rejects(k, n, p0, alpha) {
				rejected++
				break
			}
		}
	}
	t.Logf("%d of %d sequences at the null's boundary ever rejected at alpha %g", rejected, paths, alpha)
	if rejected > paths*alpha {
		t.Errorf("%d of %d sequences rejected, want at most %v", rejected, paths, paths*alpha)
	}
}

// The window weights sum to less than 1: the partial sum up to 10^6 plus a bound on the tail.
func TestWindowWeightsSumBelowOne(t *testing.T) {
	sum := 0.0
	const last = 1_000_000
	for j := uint64(0); j <= last; j++ {
		sum += windowLevel(1, j)
	}
	// For x ≥ last the weight is at most e/(4 (x+e) ln²(x+e)), whose integral is e/(4 ln(last+e)).
	tail := math.E / (4 * math.Log(last+math.E))
	if sum+tail >= 1 {
		t.Errorf("window weights sum to at most %v + %v, want below 1", sum, tail)
	}
}

// The bounds bracket the observed rate and move the right way with the counts; the critical test rejects only
// where the ceiling test rejects.
func TestBoundsAndNesting(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.Uint64Range(1, 200_000).Draw(t, "n")
		k := rapid.Uint64Range(0, n).Draw(t, "k")
		alpha := rapid.Float64Range(0.001, 0.2).Draw(t, "alpha")
		ceiling := rapid.Float64Range(0.0001, 0.5).Draw(t, "ceiling")
		crit := rapid.Float64Range(ceiling, 1).Draw(t, "crit")
		m := mixtureAbove(ceiling)
		hat := float64(k) / float64(n)
		lo, hi := m.lowerBound(k, n, alpha), upperBound(k, n, alpha)
		if lo > hat+1e-12 || hi < hat-1e-12 {
			t.Fatalf("bounds [%v, %v] do not contain the observed rate %v", lo, hi, hat)
		}
		if k < n && upperBound(k+1, n, alpha) < hi-1e-9 {
			t.Fatalf("one more error lowered the upper bound")
		}
		if m.rejects(k, n, crit, alpha) && !m.rejects(k, n, ceiling, alpha) {
			t.Fatalf("rejects the critical rate %v but not the ceiling %v", crit, ceiling)
		}
		if m.rejects(k, n, ceiling, alpha) != (lo > ceiling) && math.Abs(lo-ceiling) > 1e-6 {
			t.Fatalf("test at the ceiling %v and lower bound %v disagree", ceiling, lo)
		}
	})
}
