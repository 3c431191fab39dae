package v1alpha1

import (
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// DefaultDelivery is the built-in delivery configuration, used where neither
// the annotations nor the team's policy say otherwise: steps 1,5,25,50% held
// 30s each, a 1% error-rate ceiling, and analysis at 95% confidence (a
// healthy canary is rolled back with probability at most 5%) with at least
// 100 requests before a step advances, holding on no data, and a critical
// rate of 20%.
func DefaultDelivery() Delivery {
	maxErr := BasisPoints(100)
	return Delivery{
		Mode:         ModeOff,
		Steps:        []BasisPoints{100, 500, 2500, 5000},
		StepInterval: &metav1.Duration{Duration: 30 * time.Second},
		MaxErrorRate: &maxErr,
		Analysis: &Analysis{
			Confidence:        9500,
			MinSamples:        100,
			NoData:            NoDataHold,
			CriticalErrorRate: 2000,
		},
	}
}

// WithDefaults returns a deep copy of d with every unset field taken from def.
// Analysis is merged field by field: a zero field is unset.
func (d Delivery) WithDefaults(def Delivery) Delivery {
	out := *d.DeepCopy()
	def = *def.DeepCopy()
	if out.Mode == "" {
		out.Mode = def.Mode
	}
	if out.Service == "" {
		out.Service = def.Service
	}
	if len(out.Steps) == 0 {
		out.Steps = def.Steps
	}
	if out.StepInterval == nil {
		out.StepInterval = def.StepInterval
	}
	if out.MaxErrorRate == nil {
		out.MaxErrorRate = def.MaxErrorRate
	}
	if out.MaxLatencyP99 == nil {
		out.MaxLatencyP99 = def.MaxLatencyP99
	}
	if out.Cohort == nil {
		out.Cohort = def.Cohort
	}
	if out.Sticky == nil {
		out.Sticky = def.Sticky
	}
	if out.Split == nil {
		out.Split = def.Split
	}
	switch {
	case out.Analysis == nil:
		out.Analysis = def.Analysis
	case def.Analysis != nil:
		a, b := out.Analysis, def.Analysis
		if a.Confidence == 0 {
			a.Confidence = b.Confidence
		}
		if a.MinSamples == 0 {
			a.MinSamples = b.MinSamples
		}
		if a.NoData == "" {
			a.NoData = b.NoData
		}
		if a.CriticalErrorRate == 0 {
			a.CriticalErrorRate = b.CriticalErrorRate
		}
		if len(a.Queries) == 0 {
			a.Queries = b.Queries
		}
	}
	return out
}

// ParseRolloutDefaults turns a policy's rollout defaults into a partial
// Delivery (unset where the policy is silent), with errors under fld, normally
// spec.rolloutDefaults.
func ParseRolloutDefaults(rd *RolloutDefaults, fld *field.Path) (Delivery, field.ErrorList) {
	var d Delivery
	if rd == nil {
		return d, nil
	}
	var errs field.ErrorList
	if rd.Steps != "" {
		steps, err := ParseSteps(rd.Steps)
		if err != nil {
			errs = append(errs, invalid(fld.Child("steps"), rd.Steps, err, syntaxSteps))
		} else {
			d.Steps = steps
		}
	}
	if rd.StepInterval != nil {
		if rd.StepInterval.Duration < MinStepInterval {
			errs = append(errs, field.Invalid(fld.Child("stepInterval"), rd.StepInterval.Duration.String(),
				"must be "+syntaxStepInterval))
		} else {
			d.StepInterval = rd.StepInterval.DeepCopy()
		}
	}
	if rd.MaxErrorRate != "" {
		r, err := ParseRate(rd.MaxErrorRate)
		if err != nil {
			errs = append(errs, invalid(fld.Child("maxErrorRate"), rd.MaxErrorRate, err, syntaxRate))
		} else {
			d.MaxErrorRate = &r
		}
	}
	if rd.MaxLatencyP99 != nil {
		if rd.MaxLatencyP99.Duration <= 0 {
			errs = append(errs, field.Invalid(fld.Child("maxLatencyP99"), rd.MaxLatencyP99.Duration.String(),
				"must be "+syntaxLatency))
		} else {
			d.MaxLatencyP99 = rd.MaxLatencyP99.DeepCopy()
		}
	}
	if rd.Analysis != nil {
		a, aerrs := parseAnalysisDefaults(rd.Analysis, fld.Child("analysis"))
		errs = append(errs, aerrs...)
		d.Analysis = &a
	}
	return d, errs
}

func parseAnalysisDefaults(ad *AnalysisDefaults, fld *field.Path) (Analysis, field.ErrorList) {
	var a Analysis
	var errs field.ErrorList
	if ad.Confidence != "" {
		c, err := ParseRate(ad.Confidence)
		switch {
		case err != nil:
			errs = append(errs, invalid(fld.Child("confidence"), ad.Confidence, err, `a rate below 100%, e.g. "95%" or "0.95"`))
		case c <= 0 || c >= TotalBasisPoints:
			errs = append(errs, field.Invalid(fld.Child("confidence"), ad.Confidence,
				`must be more than 0% and less than 100%, e.g. "95%" or "0.95"`))
		default:
			a.Confidence = c
		}
	}
	if ad.MinSamples != nil {
		if *ad.MinSamples < 0 {
			errs = append(errs, field.Invalid(fld.Child("minSamples"), *ad.MinSamples, "must not be negative"))
		} else {
			a.MinSamples = *ad.MinSamples
		}
	}
	switch ad.NoData {
	case "", NoDataHold, NoDataFail, NoDataPass:
		a.NoData = ad.NoData
	default:
		errs = append(errs, field.NotSupported(fld.Child("noData"), ad.NoData,
			[]string{string(NoDataHold), string(NoDataFail), string(NoDataPass)}))
	}
	if ad.CriticalErrorRate != "" {
		r, err := ParseRate(ad.CriticalErrorRate)
		if err != nil {
			errs = append(errs, invalid(fld.Child("criticalErrorRate"), ad.CriticalErrorRate, err, syntaxRate))
		} else {
			a.CriticalErrorRate = r
		}
	}
	seen := map[string]bool{}
	for i, q := range ad.Queries {
		p := fld.Child("queries").Index(i)
		switch {
		case q.Name == "":
			errs = append(errs, field.Required(p.Child("name"), "a metric name, e.g. \"p95-latency\""))
		case seen[q.Name]:
			errs = append(errs, field.Duplicate(p.Child("name"), q.Name))
		}
		seen[q.Name] = true
		if q.Query == "" {
			errs = append(errs, field.Required(p.Child("query"), "a PromQL expression returning one sample"))
		}
		if _, err := q.ThresholdValue(); err != nil {
			errs = append(errs, field.Invalid(p.Child("threshold"), q.Threshold, err.Error()))
		}
		switch q.Comparison {
		case "", ComparisonBelow, ComparisonAbove:
		default:
			errs = append(errs, field.NotSupported(p.Child("comparison"), q.Comparison,
				[]string{string(ComparisonBelow), string(ComparisonAbove)}))
		}
	}
	a.Queries = append([]MetricQuery(nil), ad.Queries...)
	return a, errs
}

// ThresholdValue parses Threshold as a finite decimal number.
func (q MetricQuery) ThresholdValue() (float64, error) {
	v, err := strconv.ParseFloat(q.Threshold, 64)
	if err != nil || v != v || v > 1e300 || v < -1e300 {
		return 0, fmt.Errorf("threshold %q must be a finite decimal number, e.g. \"0.5\"", q.Threshold)
	}
	return v, nil
}
