package traffic

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// ExternalsFrom returns the external dependencies that Services declare (a
// Service of type ExternalName with annotation sluice.dev/external: grpc),
// sorted, and a problem for each declaration that cannot be published. It is
// pure. An external dependency is its declaring namespace's alone: its
// target is xds:///<service>.<namespace> of the Service's own namespace.
func ExternalsFrom(services []corev1.Service) ([]router.External, []Problem) {
	var out []router.External
	var problems []Problem
	for i := range services {
		s := &services[i]
		v, ok := s.Annotations[v1alpha1.AnnotationExternal]
		if !ok {
			continue
		}
		k := ServiceKey{Namespace: s.Namespace, Name: s.Name}
		bad := func(format string, args ...any) {
			problems = append(problems, Problem{Service: k, Object: "service/" + s.Name,
				Message: fmt.Sprintf(format, args...) + "; the external dependency is not published"})
		}
		switch {
		case v != v1alpha1.ExternalGRPC:
			bad("annotation %s=%q: want %q", v1alpha1.AnnotationExternal, v, v1alpha1.ExternalGRPC)
			continue
		case s.Spec.Type != corev1.ServiceTypeExternalName || s.Spec.ExternalName == "":
			bad("type %q: an external dependency is a Service of type ExternalName with spec.externalName", s.Spec.Type)
			continue
		}
		port, ok := externalPort(s.Spec.Ports)
		if !ok {
			bad("%d ports: want one port, or one named %q", len(s.Spec.Ports), "grpc")
			continue
		}
		e := router.External{Namespace: s.Namespace, Name: s.Name, Host: s.Spec.ExternalName, Port: port}
		if err := e.Check(); err != nil {
			bad("%v", err)
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b router.External) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, problems
}

// externalPort is the port named grpc, or the only port.
func externalPort(ports []corev1.ServicePort) (uint32, bool) {
	for _, p := range ports {
		if p.Name == "grpc" && p.Port > 0 {
			return uint32(p.Port), true
		}
	}
	if len(ports) == 1 && ports[0].Port > 0 {
		return uint32(ports[0].Port), true
	}
	return 0, false
}

// addExternals adds the declared external dependencies to the plan; those
// it leaves out become problems.
func addExternals(plan router.Plan, services []corev1.Service) (router.Plan, []Problem) {
	externals, problems := ExternalsFrom(services)
	plan, conflicts := router.AddExternals(plan, externals)
	for _, c := range conflicts {
		problems = append(problems, Problem{Service: ServiceKey{Namespace: c.External.Namespace, Name: c.External.Name},
			Object: "service/" + c.External.Name, Message: c.Reason + "; the external dependency is not published"})
	}
	return plan, problems
}
