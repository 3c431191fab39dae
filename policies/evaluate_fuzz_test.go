package policies

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// FuzzEvaluate feeds arbitrary Deployments to a policy using every rule and
// checks that Evaluate never panics, is deterministic, and that every
// violation is attributed and explained.
func FuzzEvaluate(f *testing.F) {
	f.Add("checkout", "registry.example.com/shop/checkout:1", "owner", "payments", "canary", "1,5,25,50", "", int32(3), int64(0))
	f.Add("", "", "", "", "beta", "x", "INC-1", int32(-1), int64(1<<40))
	f.Add("a", "nginx:latest@", "sluice.dev/team", "", "ab", "100", " ", int32(1<<30), int64(-1))

	p := strictPolicy("fuzz", v1alpha1.ModeEnforce)
	p.Spec.EmergencyBypass = &v1alpha1.EmergencyBypass{Groups: []string{"sre"}}
	p.Spec.Rules.FreezeWindows = []v1alpha1.FreezeWindow{weekly("Europe/Berlin", "Friday", "16:00", "Monday", "08:00")}
	p.Spec.Rules.CEL = []v1alpha1.CELRule{
		{Name: "owner-matches-team", Expression: "object.metadata.labels.owner == namespaceObject.metadata.labels['sluice.dev/team']", Message: "owner must be the team"},
		{Name: "images", Expression: "object.spec.template.spec.containers.all(c, c.image.size() < 100)", Message: "short images"},
	}
	p.Spec.Exceptions = []v1alpha1.PolicyException{{Namespace: "shop", Name: "checkout", Rules: []string{RuleReplicas}, Expires: metav1Time(noon), Reason: "r"}}
	warn := strictPolicy("warn", v1alpha1.ModeWarn)
	c1, err := Compile(p)
	if err != nil {
		f.Fatal(err)
	}
	c2, err := Compile(warn)
	if err != nil {
		f.Fatal(err)
	}
	policies := []*Compiled{c1, c2}

	f.Fuzz(func(t *testing.T, name, image, labelKey, labelValue, mode, steps, bypass string, replicas int32, offset int64) {
		d := goodDeployment()
		d.Name = name
		d.Spec.Template.Spec.Containers[0].Image = image
		d.Labels[labelKey] = labelValue
		d.Annotations[v1alpha1.AnnotationRollout] = mode
		d.Annotations[v1alpha1.AnnotationSteps] = steps
		if bypass != "" {
			d.Annotations[v1alpha1.AnnotationEmergencyBypass] = bypass
		}
		d.Spec.Replicas = &replicas
		now := noon.Add(time.Duration(offset))

		r := Evaluate(policies, createInput(d), now)
		again := Evaluate(policies, createInput(d), now)
		if diff := cmp.Diff(r, again, cmp.Comparer(func(a, b *field.Path) bool { return a.String() == b.String() })); diff != "" {
			t.Fatalf("Evaluate is not deterministic:\n%s", diff)
		}
		enforce := false
		for _, v := range append(append([]Violation(nil), r.Violations...), r.Bypassed...) {
			if v.Policy == "" || v.Rule == "" || v.Message == "" || v.Field == nil || v.Mode == "" {
				t.Fatalf("violation not attributed: %+v", v)
			}
		}
		for _, v := range r.Violations {
			enforce = enforce || v.Mode == v1alpha1.ModeEnforce
		}
		if r.Denied() != (enforce || len(r.Errors) > 0) {
			t.Fatalf("Denied() = %v with enforce violations %v and errors %v", r.Denied(), enforce, r.Errors)
		}
		if r.Denied() == (r.DenyMessage() == "") {
			t.Fatalf("deny message %q does not match Denied() = %v", r.DenyMessage(), r.Denied())
		}
		if len(r.Bypassed) > 0 && r.BypassReason == "" {
			t.Fatal("bypass without a reason")
		}
	})
}
