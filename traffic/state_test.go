package traffic

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// podOpt adjusts a test pod.
type podOpt func(*corev1.Pod)

func pod(name, service, ip string, opts ...podOpt) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{v1alpha1.LabelService: service}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "app",
			Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}},
		}}},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func label(k, v string) podOpt { return func(p *corev1.Pod) { p.Labels[k] = v } }

func canaryPod(p *corev1.Pod) { p.Labels[v1alpha1.LabelTrack] = v1alpha1.TrackCanary }

func notReady(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }

func terminating(p *corev1.Pod) {
	p.DeletionTimestamp = &metav1.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func ports(ps ...corev1.ContainerPort) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Ports = ps }
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func service(name string, ps ...corev1.ServicePort) corev1.Service {
	return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: corev1.ServiceSpec{Ports: ps}}
}

var grpcPort = []router.Port{{Name: "grpc", Number: 8080, Protocol: router.ProtocolGRPC}}

func ep(name, ip string, ready bool, track router.Track, ports map[string]uint32) router.Endpoint {
	return router.Endpoint{Pod: name, IP: ip, Ready: ready, Track: track, Ports: ports}
}

func TestStateFrom(t *testing.T) {
	grpc8080 := map[string]uint32{"grpc": 8080}
	tests := map[string]struct {
		objs     Objects
		want     []router.Service
		problems []string
	}{
		"tracks, readiness and terminating pods": {
			objs: Objects{Pods: []corev1.Pod{
				pod("b-canary", "checkout", "10.0.0.2", canaryPod, label(v1alpha1.LabelRevision, "abc")),
				pod("a-stable", "checkout", "10.0.0.1", label(v1alpha1.LabelTrack, "stable")),
				pod("c-unready", "checkout", "10.0.0.3", notReady),
				pod("d-terminating", "checkout", "10.0.0.4", terminating),
				pod("e-pending", "checkout", "", phase(corev1.PodPending)),
				pod("f-done", "checkout", "10.0.0.6", phase(corev1.PodSucceeded)),
				pod("g-nolabel", "checkout", "10.0.0.7"),
			}},
			want: []router.Service{{Namespace: "shop", Name: "checkout", Ports: grpcPort, Endpoints: []router.Endpoint{
				ep("a-stable", "10.0.0.1", true, router.TrackStable, grpc8080),
				{Pod: "b-canary", IP: "10.0.0.2", Ready: true, Track: router.TrackCanary, Revision: "abc", Ports: grpc8080},
				ep("c-unready", "10.0.0.3", false, router.TrackStable, grpc8080),
				ep("d-terminating", "10.0.0.4", false, router.TrackStable, grpc8080),
				ep("g-nolabel", "10.0.0.7", true, router.TrackStable, grpc8080),
			}}},
		},
		"bad track label leaves the pod out": {
			objs: Objects{Pods: []corev1.Pod{
				pod("a", "checkout", "10.0.0.1"),
				pod("b", "checkout", "10.0.0.2", label(v1alpha1.LabelTrack, "blue")),
			}},
			want: []router.Service{{Namespace: "shop", Name: "checkout", Ports: grpcPort, Endpoints: []router.Endpoint{
				ep("a", "10.0.0.1", true, router.TrackStable, grpc8080),
			}}},
			problems: []string{`checkout.shop (pod/b): label sluice.dev/track="blue" is not stable or canary; the pod gets no traffic`},
		},
		"service targetPort by name and by number, unnamed and http ports": {
			objs: Objects{
				Pods: []corev1.Pod{pod("a", "checkout", "10.0.0.1", ports(
					corev1.ContainerPort{Name: "api", ContainerPort: 9000},
					corev1.ContainerPort{Name: "web", ContainerPort: 9001},
				))},
				Services: []corev1.Service{service("checkout",
					corev1.ServicePort{Name: "grpc", Port: 80, TargetPort: intstr.FromString("api")},
					corev1.ServicePort{Name: "http-web", Port: 81, TargetPort: intstr.FromInt32(9001)},
					corev1.ServicePort{Port: 82},
					corev1.ServicePort{Name: "missing", Port: 83, TargetPort: intstr.FromString("nope"), AppProtocol: ptr.To("kubernetes.io/h2c")},
				)},
			},
			want: []router.Service{{Namespace: "shop", Name: "checkout",
				Ports: []router.Port{
					{Name: "grpc", Number: 80, Protocol: router.ProtocolGRPC},
					{Name: "http-web", Number: 81, Protocol: router.ProtocolHTTP},
					{Name: "port-82", Number: 82, Protocol: router.ProtocolGRPC},
					{Name: "missing", Number: 83, Protocol: router.ProtocolGRPC},
				},
				Endpoints: []router.Endpoint{ep("a", "10.0.0.1", true, router.TrackStable,
					map[string]uint32{"grpc": 9000, "http-web": 9001, "port-82": 82})},
			}},
		},
		"service ports: UDP and unknown appProtocol are skipped": {
			objs: Objects{
				Pods: []corev1.Pod{pod("a", "checkout", "10.0.0.1")},
				Services: []corev1.Service{service("checkout",
					corev1.ServicePort{Name: "grpc", Port: 8080},
					corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
					corev1.ServicePort{Name: "odd", Port: 90, AppProtocol: ptr.To("mongo")},
				)},
			},
			want: []router.Service{{Namespace: "shop", Name: "checkout", Ports: grpcPort,
				Endpoints: []router.Endpoint{ep("a", "10.0.0.1", true, router.TrackStable, grpc8080)}}},
			problems: []string{
				`checkout.shop (service/checkout): port "odd": appProtocol "mongo" is not one of grpc, h2c, kubernetes.io/h2c, http, kubernetes.io/http; the port is skipped`,
				`checkout.shop (service/checkout): port 53 is UDP; only TCP ports are routed, it is skipped`,
			},
		},
		"no service: named container ports, stable pods choose the number": {
			objs: Objects{Pods: []corev1.Pod{
				pod("a", "checkout", "10.0.0.1", ports(corev1.ContainerPort{Name: "grpc", ContainerPort: 8080}, corev1.ContainerPort{ContainerPort: 7000})),
				pod("b", "checkout", "10.0.0.2", canaryPod, ports(corev1.ContainerPort{Name: "grpc", ContainerPort: 7070}, corev1.ContainerPort{Name: "http", ContainerPort: 8081})),
			}},
			want: []router.Service{{Namespace: "shop", Name: "checkout",
				Ports: []router.Port{
					{Name: "grpc", Number: 8080, Protocol: router.ProtocolGRPC},
					{Name: "http", Number: 8081, Protocol: router.ProtocolHTTP},
				},
				Endpoints: []router.Endpoint{
					ep("a", "10.0.0.1", true, router.TrackStable, grpc8080),
					ep("b", "10.0.0.2", true, router.TrackCanary, map[string]uint32{"grpc": 7070, "http": 8081}),
				}}},
		},
		"no service: two names on one number": {
			objs: Objects{Pods: []corev1.Pod{
				pod("a", "checkout", "10.0.0.1", ports(corev1.ContainerPort{Name: "grpc", ContainerPort: 8080})),
				pod("b", "checkout", "10.0.0.2", ports(corev1.ContainerPort{Name: "api", ContainerPort: 8080})),
			}},
			want: []router.Service{{Namespace: "shop", Name: "checkout",
				Ports: []router.Port{{Name: "api", Number: 8080, Protocol: router.ProtocolGRPC}},
				Endpoints: []router.Endpoint{
					ep("a", "10.0.0.1", true, router.TrackStable, map[string]uint32{}),
					ep("b", "10.0.0.2", true, router.TrackStable, map[string]uint32{"api": 8080}),
				}}},
			problems: []string{`checkout.shop (pods): container ports "api" and "grpc" share number 8080; "grpc" is skipped (add a Service to choose)`},
		},
		"services in several namespaces, sorted": {
			objs: Objects{Pods: []corev1.Pod{
				pod("x", "search", "10.0.1.1"),
				func() corev1.Pod { p := pod("y", "checkout", "10.0.2.1"); p.Namespace = "zoo"; return p }(),
				pod("z", "checkout", "10.0.0.1"),
			}},
			want: []router.Service{
				{Namespace: "shop", Name: "checkout", Ports: grpcPort, Endpoints: []router.Endpoint{ep("z", "10.0.0.1", true, router.TrackStable, grpc8080)}},
				{Namespace: "shop", Name: "search", Ports: grpcPort, Endpoints: []router.Endpoint{ep("x", "10.0.1.1", true, router.TrackStable, grpc8080)}},
				{Namespace: "zoo", Name: "checkout", Ports: grpcPort, Endpoints: []router.Endpoint{ep("y", "10.0.2.1", true, router.TrackStable, grpc8080)}},
			},
		},
		"rollout names the service through its deployment": {
			objs: Objects{
				Pods: []corev1.Pod{pod("a", "checkout", "10.0.0.1")},
				Deployments: []appsv1.Deployment{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-v2",
					Labels: map[string]string{v1alpha1.LabelService: "checkout"}}}},
				Rollouts: []v1alpha1.Rollout{rollout("checkout-v2", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 500)},
			},
			want: []router.Service{{Namespace: "shop", Name: "checkout", Ports: grpcPort,
				Endpoints: []router.Endpoint{ep("a", "10.0.0.1", true, router.TrackStable, grpc8080)},
				Strategy:  router.Strategy{CanaryWeight: 500}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, problems := StateFrom(tc.objs)
			if diff := cmp.Diff(tc.want, got.Services); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
			var texts []string
			for _, p := range problems {
				texts = append(texts, p.String())
			}
			if diff := cmp.Diff(tc.problems, texts); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if _, err := router.Build(got); err != nil && len(got.Services) > 0 {
				t.Errorf("router.Build rejects the state: %v", err)
			}
		})
	}
}

// TestStateFromConsumers: a service's consumers are the union of its
// Deployments' sluice.dev/consumers; an invalid value grants nothing and is
// a problem.
func TestStateFromConsumers(t *testing.T) {
	dep := func(name, svc, consumers string) appsv1.Deployment {
		d := appsv1.Deployment{}
		d.Name, d.Namespace = name, "shop"
		d.Labels = map[string]string{v1alpha1.LabelService: svc}
		d.Annotations = map[string]string{v1alpha1.AnnotationConsumers: consumers}
		return d
	}
	objs := Objects{
		Pods: []corev1.Pod{pod("checkout-1", "checkout", "127.100.0.1"), pod("cart-1", "cart", "127.100.0.2")},
		Deployments: []appsv1.Deployment{
			dep("checkout", "checkout", "frontend"), dep("checkout-canary", "checkout", "payments, frontend"),
			dep("cart", "cart", "*,frontend"),
		},
	}
	st, problems := StateFrom(objs)
	got := map[string]router.Consumers{}
	for _, s := range st.Services {
		got[s.Name] = s.Consumers
	}
	want := map[string]router.Consumers{"checkout": {Namespaces: []string{"frontend", "payments"}}, "cart": {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("consumers (-want +got):\n%s", diff)
	}
	var deploymentProblems []Problem
	for _, p := range problems {
		if strings.HasPrefix(p.Object, "deployment/") {
			deploymentProblems = append(deploymentProblems, p)
		}
	}
	if len(deploymentProblems) != 1 || deploymentProblems[0].Object != "deployment/cart" {
		t.Errorf("problems %v, want one for deployment/cart", deploymentProblems)
	}
}
