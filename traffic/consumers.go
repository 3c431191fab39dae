package traffic

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/text"
	"github.com/sluice-dev/sluice/router"
)

// consumersOf reads the sluice.dev/consumers annotation of every Deployment
// labelled with a service: a service's consumers are the union of those of
// its Deployments (stable and canary). An invalid annotation grants nothing
// and is a problem: access fails closed.
func consumersOf(deployments []appsv1.Deployment) (map[ServiceKey]router.Consumers, []Problem) {
	out := map[ServiceKey]router.Consumers{}
	var problems []Problem
	for _, d := range deployments {
		name := d.Labels[v1alpha1.LabelService]
		v, ok := d.Annotations[v1alpha1.AnnotationConsumers]
		if name == "" || !ok {
			continue
		}
		k := ServiceKey{Namespace: d.Namespace, Name: name}
		c, err := v1alpha1.ParseConsumers(v)
		if err != nil {
			problems = append(problems, Problem{Service: k, Object: "deployment/" + d.Name,
				Message: text.Truncate(fmt.Sprintf("annotation %s: %v; it grants no namespace", v1alpha1.AnnotationConsumers, err), text.MaxMessage)})
			continue
		}
		out[k] = out[k].Union(c)
	}
	return out, problems
}
