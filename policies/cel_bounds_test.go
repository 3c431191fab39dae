package policies

import (
	"fmt"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// boundsCorpus are rules of the shapes policies use: field tests, string
// functions, comprehensions over lists and maps, nested comprehensions.
var boundsCorpus = []string{
	"object.spec.replicas >= 2",
	"has(object.metadata.labels) && 'owner' in object.metadata.labels",
	"object.spec.template.spec.containers.all(c, c.name != 'debug')",
	"object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest') && c.image.contains('/'))",
	"object.metadata.labels.all(k, !k.startsWith('tmp-') && object.metadata.labels[k].size() < 64)",
	"object.spec.template.spec.containers.exists(c, has(c.env) && c.env.exists(e, e.name == 'MODE' && e.value.matches('^prod')))",
	"object.spec.template.spec.containers.all(a, object.spec.template.spec.containers.all(b, a.name == b.name || a.image != b.image))",
	"object.metadata.name.split('-').size() < 5",
	"object.metadata.annotations.exists(k, object.metadata.annotations[k].lowerAscii().contains('secret')) == false",
	"namespaceObject.metadata.labels.exists(k, k == 'env') || object.spec.template.spec.containers.map(c, c.image).join(',').size() > 0",
}

// TestBoundedCELCostIsAnUpperBound checks what lets a rule skip runtime cost
// tracking: whenever a request's largest value fits the rule's bounded size,
// the cost the tracked program measures on it is within the static estimate
// at that size, and so within the limit.
func TestBoundedCELCostIsAnUpperBound(t *testing.T) {
	env, err := newCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	var inputs []celInput
	for _, n := range []int{0, 1, 3, 10, 40, 60, 300, 1000} {
		in, err := celVars(createInput(boundsDeployment(n)))
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, in)
	}
	bounded, checked := 0, 0
	for _, expr := range boundsCorpus {
		rule, ferr := compileRule(env, v1alpha1.CELRule{Name: "r", Expression: expr, Message: "m"}, CELCostLimit, field.NewPath("expr"))
		if ferr != nil {
			t.Fatalf("%s: %v", expr, ferr)
		}
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatal(iss.Err())
		}
		tracked, err := env.Program(ast, cel.CostLimit(CELCostLimit))
		if err != nil {
			t.Fatal(err)
		}
		if rule.bounded != nil {
			bounded++
		}
		t.Logf("bounded up to size %5d: %s", rule.boundedSize, expr)
		for _, in := range inputs {
			if rule.bounded == nil || in.size > rule.boundedSize {
				continue
			}
			tier := celSizeTiers[0]
			for _, s := range celSizeTiers {
				if in.size <= s {
					tier = s
					break
				}
			}
			est, err := env.EstimateCost(ast, pathSizes{max: tier})
			if err != nil {
				t.Fatal(err)
			}
			checked++
			// Errors (a missing field, a null list) are verdicts too: the
			// cost up to them still counts.
			_, det, _ := tracked.Eval(in.activation)
			if det == nil || det.ActualCost() == nil {
				t.Fatalf("%s: no tracked cost", expr)
			}
			if got := *det.ActualCost(); got > est.Max || got > CELCostLimit {
				t.Errorf("%s on an input of size %d: actual cost %d is above the estimate %d at size %d (limit %d)",
					expr, in.size, got, est.Max, tier, CELCostLimit)
			}
			// And both programs give the same verdict.
			want, _, werr := rule.program.Eval(in.activation)
			got, _, gerr := rule.bounded.Eval(in.activation)
			if (werr == nil) != (gerr == nil) || (werr == nil && want.Value() != got.Value()) {
				t.Errorf("%s: tracked gave %v/%v, bounded %v/%v", expr, want, werr, got, gerr)
			}
		}
	}
	if checked < len(inputs) {
		t.Fatalf("only %d evaluations compared", checked)
	}
	if bounded == 0 {
		t.Fatal("no rule of the corpus can skip tracking; the fast path is dead")
	}
}

// TestBoundedCELFallsBackToTracking checks that a request with a value
// larger than a rule's bounded size is evaluated with tracking, so the cost
// limit still stops it.
func TestBoundedCELFallsBackToTracking(t *testing.T) {
	env, err := newCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	expr := "object.spec.template.spec.containers.all(a, object.spec.template.spec.containers.all(b, a.name == b.name || a.image != b.image))"
	rule, ferr := compileRule(env, v1alpha1.CELRule{Name: "r", Expression: expr, Message: "m"}, 200_000, field.NewPath("expr"))
	if ferr != nil {
		t.Fatal(ferr)
	}
	if rule.bounded == nil {
		t.Fatal("a nested comprehension over small lists should be provably bounded at the smallest tier")
	}
	small, err := celVars(createInput(boundsDeployment(3)))
	if err != nil {
		t.Fatal(err)
	}
	if small.size > rule.boundedSize {
		t.Fatalf("small input has size %d, above %d", small.size, rule.boundedSize)
	}
	if _, err := rule.eval(small); err != nil {
		t.Fatalf("small input: %v", err)
	}
	large, err := celVars(createInput(boundsDeployment(300)))
	if err != nil {
		t.Fatal(err)
	}
	if large.size <= rule.boundedSize {
		t.Fatalf("large input has size %d, within %d", large.size, rule.boundedSize)
	}
	if _, err := rule.eval(large); err == nil || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("large input: %v, want the cost limit to stop it", err)
	}
}

// boundsDeployment has n containers, n labels and n annotations.
func boundsDeployment(n int) *appsv1.Deployment {
	d := goodDeployment()
	base := d.Spec.Template.Spec.Containers[0]
	d.Spec.Template.Spec.Containers = nil
	d.Annotations = map[string]string{}
	for i := range n {
		c := base
		c.Name = fmt.Sprintf("c%d", i)
		c.Image = fmt.Sprintf("registry.example.com/img-%d:1.%d", i, i)
		d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, c)
		d.Labels[fmt.Sprintf("l%d", i)] = strings.Repeat("v", i%60)
		d.Annotations[fmt.Sprintf("a%d", i)] = strings.Repeat("x", i)
	}
	return d
}
