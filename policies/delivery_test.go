package policies

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// compiledOf compiles the policies as the webhooks' store does: a policy
// that does not compile is left out.
func compiledOf(ps ...*v1alpha1.DeploymentPolicy) []*Compiled {
	var out []*Compiled
	for _, p := range ps {
		if c, err := Compile(p); err == nil {
			out = append(out, c)
		}
	}
	return out
}

func defaultsPolicy(t *testing.T, name, env, steps, interval string) *v1alpha1.DeploymentPolicy {
	t.Helper()
	p := &v1alpha1.DeploymentPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": env}}
	p.Spec.RolloutDefaults = &v1alpha1.RolloutDefaults{Steps: steps}
	if interval != "" {
		p.Spec.RolloutDefaults.StepInterval = &metav1.Duration{}
		if err := p.Spec.RolloutDefaults.StepInterval.UnmarshalJSON([]byte(`"` + interval + `"`)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestResolveDelivery: annotations over the selecting policies' defaults
// (first by name) over the built-in ones, as admission resolves them.
func TestResolveDelivery(t *testing.T) {
	d := goodDeployment()
	d.Annotations[v1alpha1.AnnotationSteps] = "2,20"
	ns := shopNamespace().Labels
	got, errs := ResolveDelivery(compiledOf(
		defaultsPolicy(t, "b-prod", "prod", "10,20", "1m"),
		defaultsPolicy(t, "a-prod", "prod", "", "2m"),
		defaultsPolicy(t, "other", "dev", "50", "5m"),
	), d, ns)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got.Mode != v1alpha1.ModeCanary || got.Service != "checkout" {
		t.Errorf("mode %s, service %s", got.Mode, got.Service)
	}
	if diff := cmp.Diff([]v1alpha1.BasisPoints{200, 2000}, got.Steps); diff != "" {
		t.Errorf("annotation steps must win (-want +got):\n%s", diff)
	}
	if got.StepInterval.Duration != 2*time.Minute {
		t.Errorf("interval %s, want the first policy by name (a-prod, 2m)", got.StepInterval.Duration)
	}
	if got.MaxErrorRate == nil || got.Analysis == nil {
		t.Errorf("built-in defaults not applied: %+v", got)
	}

	d.Annotations[v1alpha1.AnnotationSteps] = "50,5"
	if _, errs := ResolveDelivery(nil, d, ns); len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), "sluice.dev/steps") {
		t.Errorf("bad steps annotation: errors %v, want one naming the annotation", errs)
	}
}

// TestResolveDeliveryBrokenPolicies: a policy that does not compile, for
// whatever reason, gives no defaults and holds nothing, and the delivery is
// the one admission resolves for the same Deployment.
func TestResolveDeliveryBrokenPolicies(t *testing.T) {
	badSelector := defaultsPolicy(t, "a-bad-selector", "prod", "7", "")
	badSelector.Spec.NamespaceSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Near"}}
	badDefaults := defaultsPolicy(t, "b-bad-defaults", "prod", "90,10", "")
	badRule := defaultsPolicy(t, "c-bad-rule", "prod", "8", "")
	badRule.Spec.Mode = v1alpha1.ModeWarn
	badRule.Spec.Rules.CEL = []v1alpha1.CELRule{{Name: "broken", Expression: "object.spec.("}}
	good := defaultsPolicy(t, "d-good", "prod", "3,30", "")
	for _, p := range []*v1alpha1.DeploymentPolicy{badSelector, badDefaults, badRule} {
		if _, err := Compile(p); err == nil {
			t.Fatalf("policy %s compiles; the test needs it broken", p.Name)
		}
	}
	d := goodDeployment()
	delete(d.Annotations, v1alpha1.AnnotationSteps)
	ns := shopNamespace()
	compiled := compiledOf(badSelector, badDefaults, badRule, good)
	got, errs := ResolveDelivery(compiled, d, ns.Labels)
	if len(errs) > 0 {
		t.Fatalf("a broken policy made the delivery fail: %v", errs)
	}
	if diff := cmp.Diff([]v1alpha1.BasisPoints{300, 3000}, got.Steps); diff != "" {
		t.Errorf("steps (-want +got): only the policy that compiles gives defaults:\n%s", diff)
	}
	r := Evaluate(compiled, createInput(d), time.Now())
	if diff := cmp.Diff(r.Delivery, got); diff != "" {
		t.Errorf("admission resolves another delivery (-admission +ResolveDelivery):\n%s", diff)
	}
}
