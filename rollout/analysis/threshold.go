package analysis

// RateVerdict judges an error rate against a ceiling with the same
// anytime-valid test as the canary analysis' max-error-rate check: Fail when
// the test of "rate ≤ limit" at level alpha rejects on errors out of
// requests, Pass when the anytime-valid upper bound is at or below limit,
// Inconclusive otherwise, NoData without requests. Because the test holds
// at every look, judging the cumulative counts of one window as often as
// one likes gives a false Fail with probability at most alpha in that
// window (if every request fails independently with probability at most
// limit), which a raw rate crossing a line cannot promise.
func RateVerdict(errors, requests uint64, limit, alpha float64) Verdict {
	switch {
	case requests == 0:
		return NoData
	case errors > requests || limit <= 0 || limit >= 1 || alpha <= 0 || alpha >= 1:
		return Inconclusive
	case mixtureAbove(limit).rejects(errors, requests, limit, alpha):
		return Fail
	case upperBound(errors, requests, alpha) <= limit:
		return Pass
	}
	return Inconclusive
}
