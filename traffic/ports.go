package traffic

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// portResolver finds the container port a pod serves a service port on.
type portResolver func(port router.Port, p *corev1.Pod) (uint32, bool)

// servicePorts takes the ports of a Kubernetes Service: every TCP port, named
// as in the Service ("port-<number>" when unnamed). A pod serves a port on the
// container port the Service's targetPort names (by name, or by number; an
// unset targetPort means the port's own number).
func servicePorts(k ServiceKey, svc *corev1.Service) ([]router.Port, portResolver, []Problem) {
	var (
		ports    []router.Port
		problems []Problem
	)
	targets := map[string]intstr.IntOrString{}
	object := "service/" + svc.Name
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			problems = append(problems, Problem{Service: k, Object: object,
				Message: fmt.Sprintf("port %d is %s; only TCP ports are routed, it is skipped", sp.Port, sp.Protocol)})
			continue
		}
		name := sp.Name
		if name == "" {
			name = fmt.Sprintf("port-%d", sp.Port)
		}
		proto, err := protocolOf(sp.AppProtocol, sp.Name)
		if err != nil {
			problems = append(problems, Problem{Service: k, Object: object,
				Message: fmt.Sprintf("port %q: %v; the port is skipped", name, err)})
			continue
		}
		ports = append(ports, router.Port{Name: name, Number: uint32(sp.Port), Protocol: proto})
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port)
		}
		targets[name] = target
	}
	slices.SortFunc(ports, func(a, b router.Port) int { return cmp.Compare(a.Number, b.Number) })
	resolve := func(port router.Port, p *corev1.Pod) (uint32, bool) {
		target := targets[port.Name]
		if target.Type == intstr.Int {
			return uint32(target.IntVal), target.IntVal > 0 && target.IntVal <= 65535
		}
		n, ok := containerPorts(p)[target.StrVal]
		return n, ok
	}
	return ports, resolve, problems
}

// podPorts derives a service's ports from its pods' named TCP container ports
// when it has no Service: port name = container port name, number =
// containerPort. If pods disagree on a name's number, the lowest number among
// stable pods (else among all) is the port clients dial; each pod is still
// reached on its own number. Two names on one number keep the first name in
// sorted order.
func podPorts(k ServiceKey, pods []*corev1.Pod) ([]router.Port, portResolver, []Problem) {
	numbers := map[string]uint32{}
	stable := map[string]bool{}
	for _, p := range pods {
		isStable := p.Labels[v1alpha1.LabelTrack] != v1alpha1.TrackCanary
		for name, n := range containerPorts(p) {
			old, seen := numbers[name]
			if !seen || (isStable && !stable[name]) || (isStable == stable[name] && n < old) {
				numbers[name], stable[name] = n, isStable
			}
		}
	}
	names := make([]string, 0, len(numbers))
	for name := range numbers {
		names = append(names, name)
	}
	slices.Sort(names)
	var (
		ports    []router.Port
		problems []Problem
	)
	used := map[uint32]string{}
	for _, name := range names {
		n := numbers[name]
		if other, dup := used[n]; dup {
			problems = append(problems, Problem{Service: k, Object: "pods",
				Message: fmt.Sprintf("container ports %q and %q share number %d; %q is skipped (add a Service to choose)", other, name, n, name)})
			continue
		}
		used[n] = name
		proto, err := protocolOf(nil, name)
		if err != nil {
			problems = append(problems, Problem{Service: k, Object: "pods", Message: fmt.Sprintf("port %q: %v; the port is skipped", name, err)})
			continue
		}
		ports = append(ports, router.Port{Name: name, Number: n, Protocol: proto})
	}
	if len(ports) == 0 {
		problems = append(problems, Problem{Service: k, Object: "pods",
			Message: "no named TCP container port and no Service of this name; the service has no port to route"})
	}
	slices.SortFunc(ports, func(a, b router.Port) int { return cmp.Compare(a.Number, b.Number) })
	resolve := func(port router.Port, p *corev1.Pod) (uint32, bool) {
		n, ok := containerPorts(p)[port.Name]
		return n, ok
	}
	return ports, resolve, problems
}

// containerPorts maps a pod's named TCP container ports to their numbers.
func containerPorts(p *corev1.Pod) map[string]uint32 {
	out := map[string]uint32{}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "" || (cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP) || cp.ContainerPort <= 0 {
				continue
			}
			out[cp.Name] = uint32(cp.ContainerPort)
		}
	}
	return out
}

// protocolOf reads a port's application protocol: appProtocol when set
// ("grpc", "h2c" or "kubernetes.io/h2c" mean gRPC; "http" and
// "kubernetes.io/http" mean HTTP), else the port name's prefix ("grpc",
// "grpc-…", "http", "http-…"), else gRPC, Sluice's main client flavour.
func protocolOf(appProtocol *string, name string) (router.Protocol, error) {
	if appProtocol != nil && *appProtocol != "" {
		switch strings.ToLower(*appProtocol) {
		case "grpc", "h2c", "kubernetes.io/h2c":
			return router.ProtocolGRPC, nil
		case "http", "kubernetes.io/http":
			return router.ProtocolHTTP, nil
		default:
			return "", fmt.Errorf("appProtocol %q is not one of grpc, h2c, kubernetes.io/h2c, http, kubernetes.io/http", *appProtocol)
		}
	}
	switch {
	case name == "http" || strings.HasPrefix(name, "http-"):
		return router.ProtocolHTTP, nil
	default:
		return router.ProtocolGRPC, nil
	}
}
