package policies

import (
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// goodDeployment passes every built-in rule of strictPolicy.
func goodDeployment() *appsv1.Deployment {
	replicas := int32(3)
	res := func() corev1.ResourceRequirements {
		return corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: "checkout", Namespace: "shop",
			Labels:      map[string]string{"owner": "payments", "app": "checkout"},
			Annotations: map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationSteps: "1,5,25,50"},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout"}},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "migrate", Image: "registry.example.com/shop/migrate:1.0", Resources: res()}},
					Containers: []corev1.Container{{
						Name: "app", Image: "registry.example.com/shop/checkout:1.4.2", Resources: res(),
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}},
					}},
				},
			},
		},
	}
}

func shopNamespace() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{"env": "prod", v1alpha1.LabelTeam: "payments", "kubernetes.io/metadata.name": "shop"}}}
}

func i32(v int32) *int32 { return &v }

// strictPolicy turns every built-in rule on, except freeze windows.
func strictPolicy(name string, mode v1alpha1.PolicyMode) *v1alpha1.DeploymentPolicy {
	return &v1alpha1.DeploymentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 3},
		Spec: v1alpha1.DeploymentPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
			Mode:              mode,
			Rules: v1alpha1.PolicyRules{
				RequiredLabels:        []string{"owner"},
				AllowedRegistries:     []string{"registry.example.com/"},
				DisallowLatestTag:     true,
				RequireResources:      true,
				RequireReadinessProbe: true,
				Replicas:              &v1alpha1.ReplicaBounds{Min: i32(2), Max: i32(10)},
				RequireRollout:        []v1alpha1.DeliveryMode{v1alpha1.ModeCanary, v1alpha1.ModeBeta},
				RolloutBounds:         &v1alpha1.RolloutBounds{MaxFirstStep: "5", MinSteps: i32(3), MaxErrorRate: "2%"},
			},
		},
	}
}

func mustCompile(t *testing.T, p *v1alpha1.DeploymentPolicy) *Compiled {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func createInput(d *appsv1.Deployment) Input {
	return Input{Operation: admissionv1.Create, Deployment: d, Namespace: shopNamespace()}
}

// ruleFields lists "rule field" of each violation, for compact expectations.
func ruleFields(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule+" "+v.Field.String())
	}
	return out
}

var noon = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) // a Wednesday

func metav1Time(t time.Time) metav1.Time { return metav1.NewTime(t) }
