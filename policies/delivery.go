package policies

import (
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// ResolveDelivery is a Deployment's delivery as admission resolves it, and
// the one way Sluice resolves it (the rollout controller calls it with the
// same compiled policies): the Deployment's sluice.dev/* annotations, over
// the rollout defaults of the compiled policies whose namespace selector
// selects nsLabels (in name order, the first policy setting a field wins),
// over the built-in defaults, with Service defaulting to the Deployment's
// name.
//
// A broken policy is treated alike everywhere because it is never in
// compiled: a policy that does not compile (its rules, its rollout defaults
// or its namespace selector) contributes no defaults and holds nobody's
// rollout; admission denies what a broken Enforce policy selects and warns
// about the others. Malformed annotations are errors naming the annotation.
func ResolveDelivery(compiled []*Compiled, d *appsv1.Deployment, nsLabels map[string]string) (v1alpha1.Delivery, field.ErrorList) {
	annotated, errs := v1alpha1.ParseDelivery(d.Annotations, annotationsPath)
	return resolve(annotated, d.Name, defaultsOf(applicable(compiled, nsLabels))), errs
}

// applicable lists the compiled policies whose namespace selector selects
// nsLabels, in name order. Nil entries are skipped.
func applicable(compiled []*Compiled, nsLabels map[string]string) []*Compiled {
	out := make([]*Compiled, 0, len(compiled))
	set := labels.Set(nsLabels)
	for _, c := range compiled {
		if c != nil && c.namespaces.Matches(set) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b *Compiled) int { return strings.Compare(a.name, b.name) })
	return out
}

// defaultsOf merges the policies' rollout defaults, the first by name
// winning each field.
func defaultsOf(policies []*Compiled) v1alpha1.Delivery {
	var def v1alpha1.Delivery
	for _, c := range policies {
		def = def.WithDefaults(c.defaults)
	}
	return def
}

// resolve lays the annotations over the policies' defaults over the
// built-in defaults; the service defaults to the Deployment's name.
func resolve(annotated v1alpha1.Delivery, deployment string, defaults v1alpha1.Delivery) v1alpha1.Delivery {
	out := annotated.WithDefaults(defaults).WithDefaults(v1alpha1.DefaultDelivery())
	if out.Service == "" {
		out.Service = deployment
	}
	return out
}
