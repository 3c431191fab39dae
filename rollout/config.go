package rollout

import (
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// ResolveDelivery is the Deployment's delivery: its sluice.dev/* annotations
// over the rollout defaults of the DeploymentPolicies selecting its namespace
// (by policy name, the first policy setting a field wins, as at admission)
// over the built-in defaults, with Service defaulting to the Deployment's
// name. Malformed annotations or policy defaults are an error naming the
// field.
func ResolveDelivery(d *appsv1.Deployment, nsLabels map[string]string, policies []v1alpha1.DeploymentPolicy) (v1alpha1.Delivery, error) {
	annotated, errs := v1alpha1.ParseDelivery(d.Annotations, field.NewPath("metadata", "annotations"))
	if len(errs) > 0 {
		return v1alpha1.Delivery{}, fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, errs.ToAggregate())
	}
	ps := append([]v1alpha1.DeploymentPolicy(nil), policies...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	var team v1alpha1.Delivery
	for i := range ps {
		p := &ps[i]
		if p.Spec.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector)
			if err != nil {
				return v1alpha1.Delivery{}, fmt.Errorf("deploymentpolicy %s: spec.namespaceSelector: %w", p.Name, err)
			}
			if !sel.Matches(labels.Set(nsLabels)) {
				continue
			}
		}
		def, errs := v1alpha1.ParseRolloutDefaults(p.Spec.RolloutDefaults, field.NewPath("spec", "rolloutDefaults"))
		if len(errs) > 0 {
			return v1alpha1.Delivery{}, fmt.Errorf("deploymentpolicy %s: %w", p.Name, errs.ToAggregate())
		}
		team = team.WithDefaults(def)
	}
	out := annotated.WithDefaults(team).WithDefaults(v1alpha1.DefaultDelivery())
	if out.Service == "" {
		out.Service = d.Name
	}
	return out, nil
}

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
