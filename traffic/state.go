package traffic

import (
	"cmp"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// Objects are the cluster objects the controller reads. The order of every
// slice is irrelevant: StateFrom sorts.
type Objects struct {
	// Pods labelled sluice.dev/service.
	Pods []corev1.Pod
	// Services of the namespaces holding such pods; a Service whose name is a
	// logical service's name gives that service its ports.
	Services []corev1.Service
	// Deployments labelled sluice.dev/service; they name the logical service
	// of a Rollout whose delivery does not.
	Deployments []appsv1.Deployment
	// Rollouts give each service its strategy.
	Rollouts []v1alpha1.Rollout
}

// ServiceKey names one logical service: the sluice.dev/service label value in
// a namespace. Its gRPC target is xds:///<Name>.<Namespace>.
type ServiceKey struct {
	Namespace string
	Name      string
}

// String renders the key as the gRPC target authority "<name>.<namespace>".
func (k ServiceKey) String() string { return k.Name + "." + k.Namespace }

func compareKeys(a, b ServiceKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// Problem is something wrong with a cluster object that the controller worked
// around: a pod left out, a port skipped, a strategy replaced by "all to
// stable". Problems are logged and listed by Controller.Problems.
type Problem struct {
	// Service is the logical service affected.
	Service ServiceKey
	// Object is "<kind>/<name>" of the object at fault.
	Object string
	// Message says what is wrong and what was done about it.
	Message string
}

// String renders the problem for logs.
func (p Problem) String() string {
	return fmt.Sprintf("%s (%s): %s", p.Service, p.Object, p.Message)
}

// StateFrom maps cluster objects to the router's State. It is pure and
// deterministic: services, endpoints and ports are sorted, and the result
// depends only on the objects' contents, never on their order.
//
// A logical service exists while at least one pod carries its
// sluice.dev/service label (pods that Succeeded or Failed do not count).
// Each such pod with an IP is an endpoint; it receives traffic only while it
// is Running, Ready and not terminating (a deletionTimestamp removes it from
// the endpoints at once, before the pod stops serving). A pod without a
// sluice.dev/track label is stable. Ports come from the Service of the same
// name (see servicePorts) or, without one, from the pods' named container
// ports (see podPorts). The strategy comes from the service's Rollout (see
// strategyFor).
func StateFrom(objs Objects) (router.State, []Problem) {
	var problems []Problem
	pods := map[ServiceKey][]*corev1.Pod{}
	for i := range objs.Pods {
		p := &objs.Pods[i]
		name := p.Labels[v1alpha1.LabelService]
		if name == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		k := ServiceKey{Namespace: p.Namespace, Name: name}
		pods[k] = append(pods[k], p)
	}
	services := map[ServiceKey]*corev1.Service{}
	for i := range objs.Services {
		s := &objs.Services[i]
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			// It selects no pods (an external dependency, see
			// ExternalsFrom): its ports are not the pods'.
			continue
		}
		services[ServiceKey{Namespace: s.Namespace, Name: s.Name}] = s
	}
	strategies, strategyProblems := strategies(objs.Rollouts, objs.Deployments)
	problems = append(problems, strategyProblems...)
	consumers, consumerProblems := consumersOf(objs.Deployments)
	problems = append(problems, consumerProblems...)

	keys := make([]ServiceKey, 0, len(pods))
	for k := range pods {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	state := router.State{Services: make([]router.Service, 0, len(keys))}
	for _, k := range keys {
		ps := pods[k]
		slices.SortFunc(ps, func(a, b *corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
		var (
			ports     []router.Port
			resolve   portResolver
			problems2 []Problem
		)
		if svc := services[k]; svc != nil {
			ports, resolve, problems2 = servicePorts(k, svc)
		} else {
			ports, resolve, problems2 = podPorts(k, ps)
		}
		problems = append(problems, problems2...)
		s := router.Service{Namespace: k.Namespace, Name: k.Name, Ports: ports, Strategy: strategies[k], Consumers: consumers[k]}
		for _, p := range ps {
			e, ok, problem := endpoint(k, p, ports, resolve)
			if problem != nil {
				problems = append(problems, *problem)
			}
			if ok {
				s.Endpoints = append(s.Endpoints, e)
			}
		}
		state.Services = append(state.Services, s)
	}
	slices.SortFunc(problems, func(a, b Problem) int {
		return cmp.Or(compareKeys(a.Service, b.Service), cmp.Compare(a.Object, b.Object), cmp.Compare(a.Message, b.Message))
	})
	return state, problems
}

// endpoint maps one pod; ok is false when the pod cannot be an endpoint.
func endpoint(k ServiceKey, p *corev1.Pod, ports []router.Port, resolve portResolver) (router.Endpoint, bool, *Problem) {
	if p.Status.PodIP == "" {
		return router.Endpoint{}, false, nil
	}
	track := router.TrackStable
	switch t := p.Labels[v1alpha1.LabelTrack]; t {
	case "", v1alpha1.TrackStable:
	case v1alpha1.TrackCanary:
		track = router.TrackCanary
	default:
		return router.Endpoint{}, false, &Problem{Service: k, Object: "pod/" + p.Name,
			Message: fmt.Sprintf("label %s=%q is not stable or canary; the pod gets no traffic", v1alpha1.LabelTrack, t)}
	}
	e := router.Endpoint{
		Pod:      p.Name,
		IP:       p.Status.PodIP,
		Ports:    map[string]uint32{},
		Ready:    serving(p),
		Track:    track,
		Revision: p.Labels[v1alpha1.LabelRevision],
	}
	for _, port := range ports {
		if n, ok := resolve(port, p); ok {
			e.Ports[port.Name] = n
		}
	}
	return e, true, nil
}

// serving reports whether a pod should receive traffic: Running, Ready and
// not terminating.
func serving(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
