package policies

import (
	"encoding/json"
	"testing"

	"cel.dev/cel-go/cel"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestReadsOf(t *testing.T) {
	tests := map[string]struct{ object, oldObject string }{
		"object.spec.replicas >= 2": {"{spec:{replicas:*}}", "{}"},
		"has(object.status)":        {"{status:*}", "{}"},
		"object.spec.template.spec.containers.all(c, c.name != 'x')":           {"{spec:{template:{spec:{containers:*}}}}", "{}"},
		"object.spec.template.spec.containers[0].name == 'x'":                  {"{spec:{template:{spec:{containers:*}}}}", "{}"},
		"object.metadata.labels['app'] == 'web'":                               {"{metadata:{labels:{app:*}}}", "{}"},
		"'app' in object.metadata.labels":                                      {"{metadata:{labels:*}}", "{}"},
		"object.?spec.?replicas.orValue(1) > 0":                                {"{spec:{replicas:*}}", "{}"},
		"object.metadata.labels.size() < 10 && object.metadata.name != ''":     {"{metadata:{labels:* name:*}}", "{}"},
		"oldObject == null || oldObject.spec.replicas <= object.spec.replicas": {"{spec:{replicas:*}}", "*"},
		"object.spec == oldObject.spec":                                        {"{spec:*}", "{spec:*}"},
		"object.exists(k, k == 'status')":                                      {"*", "{}"},
		"object[namespaceObject.metadata.name] != null":                        {"*", "{}"},
		"[1].all(object, object > 0)":                                          {"*", "{}"},
		"namespaceObject.metadata.labels.env == 'prod'":                        {"{}", "{}"},
		"object.metadata.labels.all(k, object.metadata.labels[k] != '')":       {"{metadata:{labels:*}}", "{}"},
	}
	env, err := sharedCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	for expr, want := range tests {
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		r := readsOf(ast.NativeRep().Expr())
		if got := r.object.String(); got != want.object {
			t.Errorf("%s: object reads %s, want %s", expr, got, want.object)
		}
		if got := r.oldObject.String(); got != want.oldObject {
			t.Errorf("%s: oldObject reads %s, want %s", expr, got, want.oldObject)
		}
	}
}

// TestProjectedCELObjectGivesTheSameVerdicts checks the projection against
// the whole object: for every rule of a corpus and every object, the rule
// decides the same (or fails the same) whether CEL sees the whole object or
// only the fields all the rules read, or only the fields that rule reads.
func TestProjectedCELObjectGivesTheSameVerdicts(t *testing.T) {
	env, err := sharedCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	corpus := append([]string{
		"has(object.status) && !has(object.status.replicas)",
		"!has(object.metadata.annotations) || !('sluice.dev/emergency-bypass' in object.metadata.annotations)",
		"object.metadata.labels['owner'] == 'payments'",
		"object.?spec.?template.?spec.?hostNetwork.orValue(false) == false",
		"object.spec.template.spec.containers.all(c, has(c.resources.limits) && 'memory' in c.resources.limits)",
		"object.spec.replicas >= (oldObject == null ? 1 : oldObject.spec.replicas)",
		"object.metadata.name.startsWith(namespaceObject.metadata.name) || true",
	}, boundsCorpus...)
	var rules []celRule
	for _, expr := range corpus {
		r, ferr := compileRule(env, v1alpha1.CELRule{Name: "r", Expression: expr, Message: "m"}, CELCostLimit, field.NewPath("e"))
		if ferr != nil {
			t.Fatalf("%s: %v", expr, ferr)
		}
		rules = append(rules, r)
	}
	all := &CELReads{}
	for _, r := range rules {
		all.object.merge(&r.reads.object)
		all.oldObject.merge(&r.reads.oldObject)
	}
	objects := []func() any{
		func() any { return goodDeployment() },
		func() any { d := boundsDeployment(5); d.Status.Replicas = 3; return d },
		func() any { d := boundsDeployment(0); d.Labels = nil; d.Annotations = nil; return d },
	}
	compared := 0
	for i, mk := range objects {
		raw, err := json.Marshal(mk())
		if err != nil {
			t.Fatal(err)
		}
		in := createInput(goodDeployment())
		in.RawDeployment, in.RawOldDeployment = raw, raw
		in.OldDeployment = in.Deployment
		whole, err := celVars(in)
		if err != nil {
			t.Fatal(err)
		}
		in.CELReads = all
		projected, err := celVars(in)
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range rules {
			own := r.reads
			in.CELReads = &own
			alone, err := celVars(in)
			if err != nil {
				t.Fatal(err)
			}
			want, werr := evalVerdict(r.program, whole)
			for name, got := range map[string]celInput{"all rules' fields": projected, "its own fields": alone} {
				v, gerr := evalVerdict(r.program, got)
				if v != want || (werr == nil) != (gerr == nil) {
					t.Errorf("object %d, %s with %s: %v/%v, whole object gives %v/%v", i, corpus[j], name, v, gerr, want, werr)
				}
				compared++
			}
		}
	}
	if compared == 0 {
		t.Fatal("nothing compared")
	}
}

// TestProjectionLeavesOutWhatNoRuleReads checks that the projection is one.
func TestProjectionLeavesOutWhatNoRuleReads(t *testing.T) {
	raw, err := json.Marshal(goodDeployment())
	if err != nil {
		t.Fatal(err)
	}
	in := createInput(goodDeployment())
	in.RawDeployment, in.CELReads = raw, &CELReads{}
	in.CELReads.object.add([]string{"spec", "replicas"})
	got, err := celVars(in)
	if err != nil {
		t.Fatal(err)
	}
	v, found := got.activation.ResolveName(celObject)
	obj, isMap := v.(map[string]any)
	if !found || !isMap {
		t.Fatalf("object bound as %T (%v)", v, found)
	}
	spec, _ := obj["spec"].(map[string]any)
	if len(obj) != 1 || len(spec) != 1 || spec["replicas"] != int64(3) {
		t.Fatalf("projection on spec.replicas decoded %v", obj)
	}
}

func evalVerdict(p cel.Program, in celInput) (bool, error) {
	out, _, err := p.Eval(in.activation)
	if err != nil {
		return false, err
	}
	b, _ := out.Value().(bool)
	return b, nil
}
