package analysis

import "math"

// zOneSided returns the standard normal quantile z with P(Z ≤ z) = confidence, for 0 < confidence < 1.
func zOneSided(confidence float64) float64 {
	return math.Sqrt2 * math.Erfinv(2*confidence-1)
}

// interval is a closed interval of proportions within [0, 1].
type interval struct {
	lo, hi float64
}

// wilson returns the Wilson score interval for k successes out of n trials at the normal quantile z; each bound is
// a one-sided bound at the confidence z stands for. With n == 0 it returns [0, 1]: nothing is known.
func wilson(k, n uint64, z float64) interval {
	if n == 0 {
		return interval{lo: 0, hi: 1}
	}
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	denom := 1 + z2/nf
	center := (p + z2/(2*nf)) / denom
	half := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / denom
	lo, hi := center-half, center+half
	// The exact bounds at k == 0 and k == n are 0 and 1; floating point can miss them by an ulp.
	if k == 0 || lo < 0 {
		lo = 0
	}
	if k == n || hi > 1 {
		hi = 1
	}
	return interval{lo: lo, hi: hi}
}

// newcombe returns Newcombe's hybrid score interval (method 10) for the difference p1 − p2 of two proportions,
// k1/n1 and k2/n2, at the normal quantile z.
func newcombe(k1, n1, k2, n2 uint64, z float64) interval {
	p1 := rate(k1, n1)
	p2 := rate(k2, n2)
	w1 := wilson(k1, n1, z)
	w2 := wilson(k2, n2, z)
	d := p1 - p2
	lo := d - math.Sqrt((p1-w1.lo)*(p1-w1.lo)+(w2.hi-p2)*(w2.hi-p2))
	hi := d + math.Sqrt((w1.hi-p1)*(w1.hi-p1)+(p2-w2.lo)*(p2-w2.lo))
	return interval{lo: math.Max(lo, -1), hi: math.Min(hi, 1)}
}

// rate returns k/n, or 0 when n is 0.
func rate(k, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}
