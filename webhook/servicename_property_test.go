package webhook

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// TestServiceNamesAdmittedAreRoutable: every service name admission accepts,
// from the annotation or from the Deployment's name, is one the router
// publishes, and every name the router would refuse is refused at admission
// (from the annotation) or made to need the annotation (from the name).
func TestServiceNamesAdmittedAreRoutable(t *testing.T) {
	alphabet := []rune("abcz09-._A")
	rapid.Check(t, func(t *rapid.T) {
		name := string(rapid.SliceOfN(rapid.SampledFrom(alphabet), 0, 70).Draw(t, "name"))
		routable := buildable(name)

		_, errs := v1alpha1.ParseDelivery(map[string]string{v1alpha1.AnnotationService: name}, field.NewPath("metadata", "annotations"))
		if (len(errs) == 0) != routable {
			t.Fatalf("annotation %q: admission errors %v, router accepts %v", name, errs, routable)
		}
		// A Deployment may be named name only if it is a DNS subdomain;
		// its name is then its service only if the router accepts it.
		if len(validation.IsDNS1123Subdomain(name)) > 0 {
			return
		}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}}
		svc := ServiceName(d)
		if (svc != "") != routable {
			t.Fatalf("Deployment %q: service %q, router accepts %v", name, svc, routable)
		}
		if errs := serviceNameErrors(d); (len(errs) == 0) != routable {
			t.Fatalf("Deployment %q: name errors %v, router accepts %v", name, errs, routable)
		}
	})
}

// buildable reports whether the router builds a plan for a service so named.
func buildable(name string) bool {
	_, err := router.Build(router.State{Services: []router.Service{{
		Namespace: "shop", Name: name,
		Ports: []router.Port{{Name: "grpc", Number: 8080, Protocol: router.ProtocolGRPC}},
	}}})
	return err == nil || !strings.Contains(err.Error(), "name:")
}
