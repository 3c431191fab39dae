package router

import (
	"fmt"
	"math"
	"strconv"
)

// Weight is a share of traffic in basis points: 1 is 0.01%, [TotalWeight] is
// 100%. Integer basis points make weight sums exact, so "the weights of a route
// add up to 100%" is a check of equality, not of rounding tolerance.
type Weight uint32

// TotalWeight is 100% expressed as a [Weight]. Every weighted route in a
// [Plan] sums to exactly this value.
const TotalWeight Weight = 10_000

// Valid reports whether w lies within [0, TotalWeight].
func (w Weight) Valid() bool { return w <= TotalWeight }

// Complement returns TotalWeight - w. It must only be called on a valid weight.
func (w Weight) Complement() Weight { return TotalWeight - w }

// Percent returns w as a percentage (0..100).
func (w Weight) Percent() float64 { return float64(w) / 100 }

// String renders w as a percentage with up to two decimals, e.g. "0.5%".
func (w Weight) String() string {
	return strconv.FormatFloat(w.Percent(), 'f', -1, 64) + "%"
}

// WeightFromPercent converts a percentage such as 0.5 or 25 into a Weight. It
// fails for values outside 0..100 and for values finer than one basis point
// (0.01%), rather than rounding them silently.
func WeightFromPercent(p float64) (Weight, error) {
	if math.IsNaN(p) || p < 0 || p > 100 {
		return 0, fmt.Errorf("weight %v%%: must be between 0 and 100", p)
	}
	bp := p * 100
	rounded := math.Round(bp)
	if math.Abs(bp-rounded) > 1e-6 {
		return 0, fmt.Errorf("weight %v%%: finer than 0.01%%, the smallest step", p)
	}
	return Weight(rounded), nil
}
