package traffic

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

func external(name, host, annotation string, ps ...corev1.ServicePort) corev1.Service {
	s := service(name, ps...)
	s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, host
	s.Annotations = map[string]string{v1alpha1.AnnotationExternal: annotation}
	return s
}

func TestExternalsFrom(t *testing.T) {
	grpcPort := corev1.ServicePort{Name: "grpc", Port: 443}
	cases := map[string]struct {
		svc     corev1.Service
		want    []router.External
		problem string
	}{
		"declared":  {svc: external("payments", "api.example", "grpc", grpcPort), want: []router.External{{Namespace: "shop", Name: "payments", Host: "api.example", Port: 443}}},
		"only port": {svc: external("payments", "api.example", "grpc", corev1.ServicePort{Name: "x", Port: 8443}), want: []router.External{{Namespace: "shop", Name: "payments", Host: "api.example", Port: 8443}}},
		"not annotated": {svc: func() corev1.Service {
			s := external("payments", "api.example", "", grpcPort)
			s.Annotations = nil
			return s
		}()},
		"other protocol": {svc: external("payments", "api.example", "http", grpcPort), problem: `want "grpc"`},
		"not externalname": {svc: func() corev1.Service {
			s := external("p", "", "grpc", grpcPort)
			s.Spec.Type = corev1.ServiceTypeClusterIP
			return s
		}(), problem: "type"},
		"two ports": {svc: external("p", "api.example", "grpc", corev1.ServicePort{Name: "a", Port: 1}, corev1.ServicePort{Name: "b", Port: 2}), problem: "2 ports"},
		"bad host":  {svc: external("p", "api example", "grpc", grpcPort), problem: "host"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, problems := ExternalsFrom([]corev1.Service{c.svc})
			if len(got) != len(c.want) || (len(got) == 1 && got[0] != c.want[0]) {
				t.Errorf("externals %+v, want %+v", got, c.want)
			}
			switch {
			case c.problem == "" && len(problems) > 0:
				t.Errorf("problems %v, want none", problems)
			case c.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0].Message, c.problem)):
				t.Errorf("problems %v, want one saying %q", problems, c.problem)
			}
		})
	}
}

// TestExternalNameGivesNoPorts: an ExternalName Service named like a logical
// service does not give the pods its ports (it selects no pods); the pods'
// own named ports stay, and the declaration is refused as a conflict.
func TestExternalNameGivesNoPorts(t *testing.T) {
	objs := Objects{
		Pods:     []corev1.Pod{pod("checkout-1", "checkout", "127.0.0.5")},
		Services: []corev1.Service{external("checkout", "evil.example", "grpc", corev1.ServicePort{Name: "grpc", Port: 9999})},
	}
	state, problems := StateFrom(objs)
	if len(problems) > 0 || len(state.Services) != 1 || len(state.Services[0].Ports) != 1 || state.Services[0].Ports[0].Number != 8080 {
		t.Fatalf("state %+v problems %v, want checkout on its pods' port 8080", state.Services, problems)
	}
	plan, err := router.Build(state)
	if err != nil {
		t.Fatal(err)
	}
	plan, problems = addExternals(plan, objs.Services)
	if len(plan.Services) != 1 || len(problems) != 1 || !strings.Contains(problems[0].Message, "already a service") {
		t.Errorf("services %d, problems %v: want the pods' checkout only and the declaration refused", len(plan.Services), problems)
	}
}
