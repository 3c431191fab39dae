package webhook

import (
	"fmt"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// BenchmarkHandlers measures the CPU cost of one admission request through
// the HTTP handler (decode, evaluate, encode), in process and without TLS,
// with 1, 10 and 50 policies selecting the namespace. The e2e benchmarks
// measure the same over TLS and HTTP/2 against the real controller.
func BenchmarkHandlers(b *testing.B) {
	d := testDeployment(optedIn, withLabels("owner", "payments"))
	c := &d.Spec.Template.Spec.Containers[0]
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	for _, n := range []int{1, 10, 50} {
		f := newFixture(b, shopNamespace())
		for i := range n {
			f.policy(b, fmt.Sprintf("p%02d", i), []v1alpha1.PolicyMode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit}[i%3], func(s *v1alpha1.DeploymentPolicySpec) {
				s.Rules.RequiredLabels = []string{"owner"}
				s.Rules.DisallowLatestTag = true
				s.Rules.AllowedRegistries = []string{"registry.example.com/"}
				s.Rules.RequireResources = true
				s.Rules.CEL = []v1alpha1.CELRule{{Name: "no-debug", Expression: "object.spec.template.spec.containers.all(c, c.name != 'debug')", Message: "m"}}
				s.InjectLabels = map[string]string{fmt.Sprintf("policy-%02d", i): "true"}
			})
		}
		for _, path := range []string{PathMutateDeployment, PathValidateDeployment} {
			b.Run(fmt.Sprintf("%s/policies=%d", path[1:], n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if resp := f.admit(b, path, admissionv1.Create, d, nil, true); !resp.Allowed {
						b.Fatalf("denied: %+v", resp.Result)
					}
				}
			})
		}
	}
}
