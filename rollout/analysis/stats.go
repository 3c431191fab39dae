package analysis

// rate returns k/n, or 0 when n is 0.
func rate(k, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(k) / float64(n)
}
