package rollout

import (
	"fmt"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// AnalysisConfig turns a resolved delivery into the analysis' thresholds,
// starting from analysis.Defaults. The delivery's confidence becomes the
// guarantee: a canary whose true error rates are within their limits is rolled
// back with probability at most 1 − confidence over the whole rollout. Custom
// queries become checks bounded by their thresholds (Below: at most, Above: at
// least); they are gauges, outside that guarantee, and their decisions say so.
func AnalysisConfig(d v1alpha1.Delivery) (analysis.Config, error) {
	cfg := analysis.Defaults()
	if d.MaxErrorRate != nil {
		cfg.MaxErrorRate = ratio(*d.MaxErrorRate)
	}
	if d.MaxLatencyP99 != nil {
		cfg.MaxLatencyP99 = d.MaxLatencyP99.Duration
	}
	if a := d.Analysis; a != nil {
		if a.Confidence > 0 {
			cfg.Confidence = ratio(a.Confidence)
		}
		if a.MinSamples > 0 {
			cfg.MinSamples = uint64(a.MinSamples)
		}
		if a.NoData != "" {
			cfg.NoData = analysis.NoDataPolicy(a.NoData)
		}
		if a.CriticalErrorRate > 0 {
			cfg.CriticalErrorRate = ratio(a.CriticalErrorRate)
		}
		for _, q := range a.Queries {
			v, err := q.ThresholdValue()
			if err != nil {
				return analysis.Config{}, fmt.Errorf("analysis query %s: %w", q.Name, err)
			}
			c := analysis.CustomCheck{Name: q.Name}
			if q.Comparison == v1alpha1.ComparisonAbove {
				c.Min = &v
			} else {
				c.Max = &v
			}
			cfg.Custom = append(cfg.Custom, c)
		}
	}
	if err := cfg.Validate(); err != nil {
		return analysis.Config{}, fmt.Errorf("analysis configuration: %w", err)
	}
	return cfg, nil
}

func ratio(b v1alpha1.BasisPoints) float64 { return float64(b) / float64(v1alpha1.TotalBasisPoints) }
