package policies

import (
	"testing"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// BenchmarkEvaluate measures one admission's policy work: two policies with
// every built-in rule, a freeze window and two CEL rules, on a compliant
// Deployment with two containers.
func BenchmarkEvaluate(b *testing.B) {
	p := strictPolicy("bench", v1alpha1.ModeEnforce)
	p.Spec.Rules.FreezeWindows = []v1alpha1.FreezeWindow{weekly("Europe/Berlin", "Friday", "16:00", "Monday", "08:00")}
	p.Spec.Rules.CEL = []v1alpha1.CELRule{
		{Name: "team", Expression: "object.metadata.labels.owner == namespaceObject.metadata.labels['sluice.dev/team']", Message: "m"},
		{Name: "min-two", Expression: "object.spec.replicas >= 2", Message: "m"},
	}
	c1, err := Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	c2, err := Compile(strictPolicy("warn", v1alpha1.ModeWarn))
	if err != nil {
		b.Fatal(err)
	}
	in := createInput(goodDeployment())
	b.ReportAllocs()
	for b.Loop() {
		if r := Evaluate([]*Compiled{c1, c2}, in, noon); r.Denied() {
			b.Fatal(r.DenyMessage())
		}
	}
}

// BenchmarkCompile measures compiling a policy with two CEL rules.
func BenchmarkCompile(b *testing.B) {
	p := strictPolicy("bench", v1alpha1.ModeEnforce)
	p.Spec.Rules.CEL = []v1alpha1.CELRule{
		{Name: "team", Expression: "object.metadata.labels.owner == namespaceObject.metadata.labels['sluice.dev/team']", Message: "m"},
		{Name: "min-two", Expression: "object.spec.replicas >= 2", Message: "m"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}
