package analysis

import (
	"math"
	"sort"
)

// This file holds the anytime-valid machinery: mixture likelihood ratios on cumulative Bernoulli counts, the tests
// they give, and the confidence sequences (time-uniform bounds) they invert to.
//
// For an error count k out of n requests and a rate p0, the likelihood ratio of an alternative rate p1 is
//
//	Λ(p1; p0) = (p1/p0)^k · ((1−p1)/(1−p0))^(n−k).
//
// If every request fails independently, given the past, with a probability p_t ≤ p0 (which may change from
// request to request), then for p1 > p0 the ratio is a nonnegative supermartingale in the request count starting
// at 1: one more request multiplies it by p1/p0 or (1−p1)/(1−p0), whose expectation p_t·p1/p0 + (1−p_t)(1−p1)/(1−p0)
// is linear and increasing in p_t and equals 1 at p_t = p0, so it is at most 1 for p_t ≤ p0. The boundary p0 is
// therefore the worst case of the composite null "rate ≤ p0", and a mixture Σ w_j Λ(p_j; p0) over alternatives
// p_j > p0 with weights summing to at most 1 is again such a supermartingale. Ville's inequality bounds the
// probability that it ever reaches 1/α by α, however often and however long it is looked at: a test that rejects
// "rate ≤ p0" when the mixture reaches 1/α wrongly rejects with probability at most α over the whole rollout. The
// mixture depends on the counts only, so no state is needed beyond the cumulative counts themselves.
//
// The alternatives are a fixed grid, geometric in the odds with ratio gridRatio from 0.001% to 99.999%. A grid
// point within a factor √gridRatio of the true rate costs little evidence (the Kullback-Leibler divergence between
// neighbours is small), and a fixed grid with fixed weights makes the mixture monotone in p0, which the bounds
// below rely on.

const (
	// gridRatio is the odds ratio between neighbouring alternatives.
	gridRatio = 1.3
	gridMin   = 1e-5
)

// alternative is one grid rate with its logs precomputed.
type alternative struct {
	p, logP, log1mP float64
}

// grid holds the alternatives in increasing order.
var grid = func() []alternative {
	var g []alternative
	for l := logit(gridMin); l <= -logit(gridMin); l += math.Log(gridRatio) {
		p := 1 / (1 + math.Exp(-l))
		g = append(g, alternative{p: p, logP: math.Log(p), log1mP: math.Log1p(-p)})
	}
	return g
}()

// rankWeight[i] is log(1/((i+1)(i+2))), the log weight of the alternative of rank i+1 above an anchor.
var rankWeight = func() []float64 {
	w := make([]float64, len(grid))
	for i := range w {
		r := float64(i + 1)
		w[i] = -math.Log(r * (r + 1))
	}
	return w
}()

func logit(p float64) float64 { return math.Log(p / (1 - p)) }

// logRatio returns log Λ(a; p0) for k errors out of n requests.
func logRatio(a alternative, k, n uint64, logP0, log1mP0 float64) float64 {
	return float64(k)*(a.logP-logP0) + float64(n-k)*(a.log1mP-log1mP0)
}

// above is the one-sided mixture for nulls "rate ≤ p0" with p0 at or above anchor: the grid points above the anchor
// weighted 1/(i(i+1)) by their rank i = 1, 2, … from the anchor, so the alternatives just beyond the limit, which
// take the most evidence to tell apart, get the most weight. The weights sum to less than 1.
type above struct{ first int }

func mixtureAbove(anchor float64) above {
	return above{first: sort.Search(len(grid), func(i int) bool { return grid[i].p > anchor })}
}

// terms appends the log weighted ratios of the mixture for "rate ≤ p0", over the alternatives above both p0 and
// the anchor, to buf.
func (m above) terms(buf []float64, k, n uint64, p0 float64) []float64 {
	if p0 >= 1 {
		return buf
	}
	if p0 <= 0 {
		if k > 0 {
			return append(buf, math.Inf(1))
		}
		p0 = math.SmallestNonzeroFloat64
	}
	lp, lq := math.Log(p0), math.Log1p(-p0)
	for i := m.first; i < len(grid); i++ {
		a := grid[i]
		if a.p <= p0 {
			continue
		}
		buf = append(buf, rankWeight[i-m.first]+logRatio(a, k, n, lp, lq))
	}
	return buf
}

// rejects reports whether the test of "rate ≤ p0" at level alpha rejects on k errors out of n requests.
func (m above) rejects(k, n uint64, p0, alpha float64) bool {
	if n == 0 || float64(k) <= p0*float64(n) {
		// At or below the observed rate every ratio is at most 1 and the weights sum to less than 1.
		return false
	}
	var buf [128]float64
	return reaches(m.terms(buf[:0], k, n, p0), -math.Log(alpha))
}

// lowerBound returns the anytime-valid lower confidence bound at level alpha: the smallest rate that the test does
// not reject. The true rate is below it, at any time, with probability at most alpha.
func (m above) lowerBound(k, n uint64, alpha float64) float64 {
	if k == 0 {
		return 0
	}
	hat := min(float64(k)/float64(n), 1-gridMin/10)
	floor := min(hat, gridMin/10)
	threshold := -math.Log(alpha)
	var buf [128]float64
	// f decreases in the log-odds x below the observed rate, so the rejected rates are an interval [0, bound).
	f := func(x float64) float64 { return logSumExp(m.terms(buf[:0], k, n, expit(x))) - threshold }
	if f(logit(floor)) < 0 {
		return 0
	}
	lo := logit(floor)
	if g := logit(max(floor, hat-guess(hat, n, threshold))); f(g) >= 0 {
		lo = g
	}
	rejected, _ := root(f, lo, logit(hat))
	return expit(rejected)
}

// upperBound returns the anytime-valid upper confidence bound at level alpha on k errors out of n requests: the
// largest rate p0 that the mirror-image test of "rate ≥ p0" does not reject. That test mixes every grid point
// below p0 with the same weight 1/len(grid); it is valid by the argument above with the roles of errors and
// successes exchanged. The true rate is above the bound, at any time, with probability at most alpha.
func upperBound(k, n uint64, alpha float64) float64 {
	if n == 0 {
		return 1
	}
	hat := max(float64(k)/float64(n), gridMin/10)
	top := 1 - gridMin/10
	threshold := -math.Log(alpha)
	logW := -math.Log(float64(len(grid)))
	var buf [128]float64
	// f increases in the log-odds x above the observed rate, so the rejected rates are an interval (bound, 1].
	f := func(x float64) float64 {
		p0 := expit(x)
		lp, lq := math.Log(p0), math.Log1p(-p0)
		terms := buf[:0]
		for _, a := range grid {
			if a.p >= p0 {
				break
			}
			terms = append(terms, logW+logRatio(a, k, n, lp, lq))
		}
		return logSumExp(terms) - threshold
	}
	if hat >= top || f(logit(top)) < 0 {
		return 1
	}
	hi := logit(top)
	if g := logit(min(top, hat+guess(hat, n, threshold))); f(g) >= 0 {
		hi = g
	}
	_, rejected := root(f, logit(hat), hi)
	return expit(rejected)
}

// guess is a distance from the observed rate beyond which the bound usually lies, to start the search near it:
// a normal-approximation width with some room for the mixture's cost.
func guess(hat float64, n uint64, threshold float64) float64 {
	c := 2 * (threshold + 5)
	return math.Sqrt(c*max(hat, 1/float64(n))/float64(n)) + c/float64(n)
}

// root brackets the zero of a monotone f on [lo, hi], where f(lo) and f(hi) have opposite signs (or f(lo) is
// the one that is ≥ 0 for a decreasing f), by the Illinois variant of regula falsi, and returns the final
// bracket: its ends are on either side of the zero, the one with f ≥ 0 being on the rejected side.
func root(f func(float64) float64, lo, hi float64) (float64, float64) {
	flo, fhi := f(lo), f(hi)
	side := 0
	for range 100 {
		if hi-lo < 1e-5 {
			break
		}
		x := hi - fhi*(hi-lo)/(fhi-flo)
		if !(x > lo && x < hi) || math.IsNaN(x) {
			x = (lo + hi) / 2
		}
		fx := f(x)
		if (fx >= 0) == (flo >= 0) {
			lo, flo = x, fx
			if side == -1 {
				fhi /= 2
			}
			side = -1
		} else {
			hi, fhi = x, fx
			if side == 1 {
				flo /= 2
			}
			side = 1
		}
	}
	return lo, hi
}

func expit(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// windowLevel is the level at which the test may judge the requests after the first j of the canary's requests
// (a recent window that starts at request j+1): alpha × w(j) with w(j) = 1/(4 (j+1) ln²(j+e)). The weights sum to
// less than 1 over all j (the sum is at most (1 + e)/4), so by the union bound over window starts, and Ville's
// inequality for each start, windows wrongly reject with probability at most alpha, however many there are.
// The price of a late start is logarithmic: ln(1/w) is about 12 at j = 1,000 and 17 at j = 40,000.
func windowLevel(alpha float64, j uint64) float64 {
	l := math.Log(float64(j) + math.E)
	return alpha / (4 * (float64(j) + 1) * l * l)
}

// logSumExp returns log Σ exp(t_i), -Inf for no terms.
func logSumExp(terms []float64) float64 {
	top := math.Inf(-1)
	for _, t := range terms {
		top = max(top, t)
	}
	if math.IsInf(top, 0) {
		return top
	}
	sum := 0.0
	for _, t := range terms {
		if d := t - top; d > -40 {
			sum += math.Exp(d)
		}
	}
	return top + math.Log(sum)
}

// reaches reports whether log Σ exp(t_i) ≥ threshold. Most calls are decided by the largest term alone (it
// reaches the threshold, or cannot with all terms as large), which spares the exponentials.
func reaches(terms []float64, threshold float64) bool {
	if len(terms) == 0 {
		return false
	}
	top := math.Inf(-1)
	for _, t := range terms {
		top = max(top, t)
	}
	switch {
	case top >= threshold:
		return true
	case top+math.Log(float64(len(terms))) < threshold:
		return false
	}
	sum := 0.0
	for _, t := range terms {
		if d := t - top; d > -40 {
			sum += math.Exp(d)
		}
	}
	return top+math.Log(sum) >= threshold
}
