package traffic

import (
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/translate"
)

// genAnnotation draws a value for one delivery annotation: mostly built
// from pieces admission may accept (names and values from wide alphabets),
// sometimes arbitrary text.
func genAnnotation(t *rapid.T, key string) string {
	if rapid.IntRange(0, 9).Draw(t, key+"/arbitrary") == 0 {
		return rapid.StringMatching(`[ -~]{0,16}`).Draw(t, key+"/text")
	}
	var name string
	switch rapid.IntRange(0, 19).Draw(t, key+"/namekind") {
	case 0:
		name = rapid.StringMatching(`grpc-[a-z]{1,4}`).Draw(t, key+"/name")
	case 1:
		name = rapid.SampledFrom([]string{router.WarmupHeader, strings.ToUpper(router.WarmupHeader)}).Draw(t, key+"/name")
	case 2, 3, 4, 5:
		name = rapid.StringMatching(`[a-zA-Z0-9_.\-!#$%&'*+^|~]{1,12}`).Draw(t, key+"/name")
	default:
		name = rapid.StringMatching(`[a-z][a-z0-9_.\-]{0,10}`).Draw(t, key+"/name")
	}
	value := rapid.OneOf(rapid.StringMatching(`[a-z0-9]{1,6}`), rapid.StringMatching(`[!-~][ -~]{0,8}[!-~]`)).Draw(t, key+"/value")
	pick := func(vs ...string) string { return rapid.SampledFrom(vs).Draw(t, key+"/form") }
	switch key {
	case v1alpha1.AnnotationRollout:
		return pick("canary", "beta", "ab")
	case v1alpha1.AnnotationCohort:
		return pick("header:"+name+"="+value, "header:"+name, "header:"+name+"~"+value, "cookie:"+name+"="+value)
	case v1alpha1.AnnotationSticky:
		return pick("header:", "cookie:") + name
	case v1alpha1.AnnotationSplit:
		return pick("0", "0.01", "12.5", "50", "100")
	case v1alpha1.AnnotationSteps:
		return pick("1,5,25,50", "0.5,50", "99.99")
	case v1alpha1.AnnotationService:
		return pick("checkout", "api-v2", name)
	case v1alpha1.AnnotationConsumers:
		return pick("*", "web", "web,mobile", name)
	}
	return value
}

// TestAdmittedAnnotationsArePublishable: for every set of delivery
// annotations that admission accepts, the traffic side builds and translates
// routes for the Rollout it leads to, in every active phase and weight,
// without a problem: what admission accepts, traffic can publish.
func TestAdmittedAnnotationsArePublishable(t *testing.T) {
	keys := []string{v1alpha1.AnnotationRollout, v1alpha1.AnnotationCohort, v1alpha1.AnnotationSticky,
		v1alpha1.AnnotationSplit, v1alpha1.AnnotationSteps, v1alpha1.AnnotationService, v1alpha1.AnnotationConsumers}
	admitted := 0
	rapid.Check(t, func(t *rapid.T) {
		ann := map[string]string{}
		for i, k := range keys {
			if i == 0 || rapid.IntRange(0, 3).Draw(t, "has "+k) > 0 {
				ann[k] = genAnnotation(t, k)
			}
		}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout", Annotations: ann}}
		r := policies.Evaluate(nil, policies.Input{Operation: admissionv1.Create, Deployment: d,
			Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}}, time.Unix(0, 0))
		if errs := r.FieldErrors(); len(errs) > 0 || r.Delivery.Mode == v1alpha1.ModeOff {
			t.Skipf("not admitted or not delivered: %v", errs)
		}
		admitted++
		delivery := r.Delivery
		phase := rapid.SampledFrom([]v1alpha1.RolloutPhase{v1alpha1.PhaseProgressing, v1alpha1.PhasePaused, v1alpha1.PhasePromoting}).Draw(t, "phase")
		w := v1alpha1.BasisPoints(rapid.IntRange(0, int(v1alpha1.TotalBasisPoints)).Draw(t, "weight"))
		ro := v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: d.Name},
			Spec:   v1alpha1.RolloutSpec{Delivery: delivery},
			Status: v1alpha1.RolloutStatus{Phase: phase, CurrentWeight: w}}
		svc := delivery.Service
		d.Labels = map[string]string{v1alpha1.LabelService: svc}
		objs := Objects{
			Pods: []corev1.Pod{
				pod("stable-0", svc, "10.0.0.1", ports(corev1.ContainerPort{Name: "grpc", ContainerPort: 8080})),
				pod("canary-0", svc, "10.0.0.2", canaryPod, ports(corev1.ContainerPort{Name: "grpc", ContainerPort: 8080})),
			},
			Deployments: []appsv1.Deployment{*d},
			Rollouts:    []v1alpha1.Rollout{ro},
		}
		state, problems := StateFrom(objs)
		if len(problems) > 0 {
			t.Fatalf("admitted annotations %q: traffic problems %v", ann, problems)
		}
		plan, err := router.Build(state)
		if err != nil {
			t.Fatalf("admitted annotations %q: the router refuses them: %v", ann, err)
		}
		if _, err := translate.Translate(plan, translate.Options{}); err != nil {
			t.Fatalf("admitted annotations %q: translation fails: %v", ann, err)
		}
	})
	t.Logf("%d admitted annotation sets built and translated", admitted)
}
