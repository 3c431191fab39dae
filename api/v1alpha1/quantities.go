package v1alpha1

import (
	"errors"
	"fmt"
	"strings"
)

// maxIntegerDigits bounds the integer part of decimals, far above any valid
// value and far below int64 overflow.
const maxIntegerDigits = 9

// parseScaledDecimal reads an unsigned decimal such as "12.5" as an integer
// scaled by 10^scale ("12.5" with scale 2 is 1250). It refuses signs,
// exponents, spaces and more fraction digits than scale carries.
func parseScaledDecimal(s string, scale int) (int64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	intPart, fracPart, hasDot := strings.Cut(s, ".")
	if intPart == "" && (!hasDot || fracPart == "") {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if hasDot && fracPart == "" {
		return 0, fmt.Errorf("%q has a dot but no digits after it", s)
	}
	if len(intPart) > maxIntegerDigits {
		return 0, fmt.Errorf("%q is too large", s)
	}
	var v int64
	for _, r := range intPart {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a plain decimal number", s)
		}
		v = v*10 + int64(r-'0')
	}
	trimmed := strings.TrimRight(fracPart, "0")
	for _, r := range fracPart {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a plain decimal number", s)
		}
	}
	if len(trimmed) > scale {
		return 0, fmt.Errorf("%q is more precise than %d decimal places", s, scale)
	}
	for i := 0; i < scale; i++ {
		v *= 10
		if i < len(trimmed) {
			v += int64(trimmed[i] - '0')
		}
	}
	return v, nil
}

// ParsePercent reads a percentage such as "25", "0.5" or "12.5%" (the % sign
// is optional) with at most two decimal places, as basis points in [0, 10000].
func ParsePercent(s string) (BasisPoints, error) {
	v, err := parseScaledDecimal(strings.TrimSuffix(s, "%"), 2)
	if err != nil {
		return 0, err
	}
	if v > int64(TotalBasisPoints) {
		return 0, fmt.Errorf("%q is more than 100%%", s)
	}
	return BasisPoints(v), nil
}

// ParseRate reads a rate written as a percentage with a % sign ("1%", "0.5%")
// or as a fraction without one ("0.01"), as basis points in [0, 10000].
func ParseRate(s string) (BasisPoints, error) {
	if strings.HasSuffix(s, "%") {
		return ParsePercent(s)
	}
	v, err := parseScaledDecimal(s, 4)
	if err != nil {
		return 0, err
	}
	if v > int64(TotalBasisPoints) {
		return 0, fmt.Errorf("%q is more than 1 (a fraction) — write percentages with a %% sign", s)
	}
	return BasisPoints(v), nil
}

// ParseSteps reads canary weights in percent separated by commas, such as
// "1,5,25,50" or "0.5, 2, 10": at least one, strictly increasing, each
// strictly between 0 and 100.
func ParseSteps(s string) ([]BasisPoints, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no steps")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxSteps {
		return nil, fmt.Errorf("%d steps, at most %d allowed", len(parts), MaxSteps)
	}
	out := make([]BasisPoints, 0, len(parts))
	for i, p := range parts {
		w, err := ParsePercent(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", i+1, err)
		}
		if w <= 0 || w >= TotalBasisPoints {
			return nil, fmt.Errorf("step %d is %s, must be more than 0%% and less than 100%%", i+1, w)
		}
		if i > 0 && w <= out[i-1] {
			return nil, fmt.Errorf("step %d (%s) is not larger than step %d (%s): steps must increase", i+1, w, i, out[i-1])
		}
		out = append(out, w)
	}
	return out, nil
}

// MaxSteps is the most canary steps a delivery may have.
const MaxSteps = 20
