package policies_test

import (
	"fmt"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// A validating webhook compiles policies when they change and evaluates each
// Deployment against them: Enforce violations deny, Warn violations become
// admission warnings, Audit violations are only counted.
func ExampleEvaluate() {
	policy, err := policies.Compile(&v1alpha1.DeploymentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "prod-baseline"},
		Spec: v1alpha1.DeploymentPolicySpec{
			Mode: v1alpha1.ModeEnforce,
			Rules: v1alpha1.PolicyRules{
				DisallowLatestTag: true,
				FreezeWindows: []v1alpha1.FreezeWindow{{
					Name: "weekend", TimeZone: "Europe/Berlin",
					Weekly: &v1alpha1.WeeklyWindow{
						From: v1alpha1.WeekTime{Day: "Friday", Time: "16:00"},
						To:   v1alpha1.WeekTime{Day: "Monday", Time: "08:00"},
					},
				}},
			},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/acme/checkout:latest"}},
		}}},
	}
	saturday := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	r := policies.Evaluate([]*policies.Compiled{policy}, policies.Input{
		Operation:  admissionv1.Create,
		Deployment: d,
		Namespace:  &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
	}, saturday)
	fmt.Println(r.Denied())
	fmt.Println(r.DenyMessage())
	// Output:
	// true
	// denied by Sluice policy (2 problem(s)):
	// - spec.template.spec.containers[0].image: Forbidden: container "app": image "ghcr.io/acme/checkout:latest" uses the mutable tag latest; pin a version or a digest (policy prod-baseline, rule disallowLatestTag)
	// - spec.template: Forbidden: freeze window "weekend" is in force: changes are refused until Mon 2026-11-30 08:00 CET (Europe/Berlin) (policy prod-baseline, rule freezeWindow)
}
