package policies

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func celPolicy(rules ...v1alpha1.CELRule) *v1alpha1.DeploymentPolicy {
	p := strictPolicy("cel", v1alpha1.ModeEnforce)
	p.Spec.Rules = v1alpha1.PolicyRules{CEL: rules}
	return p
}

func TestCELRules(t *testing.T) {
	cases := map[string]struct {
		expr     string
		update   bool
		want     bool // true: a violation
		wantText string
	}{
		"replicas pass":             {expr: "object.spec.replicas >= 2"},
		"replicas fail":             {expr: "object.spec.replicas >= 5", want: true, wantText: "rule says no"},
		"namespace label":           {expr: "namespaceObject.metadata.labels['sluice.dev/team'] == object.metadata.labels.owner"},
		"has() guards absent field": {expr: "!has(object.metadata.labels.missing)"},
		"containers all": {
			expr: "object.spec.template.spec.containers.all(c, c.image.startsWith('registry.example.com/'))"},
		"string extension": {expr: "object.metadata.name.upperAscii() == 'CHECKOUT'"},
		"missing key fails closed": {expr: "object.metadata.labels.missing == 'x'", want: true,
			wantText: "could not be evaluated, so it fails closed: no such key: missing"},
		"oldObject is null on create": {expr: "oldObject == null"},
		"oldObject on update":         {expr: "oldObject.spec.replicas == object.spec.replicas", update: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := mustCompile(t, celPolicy(v1alpha1.CELRule{Name: "r", Expression: tc.expr, Message: "rule says no"}))
			in := createInput(goodDeployment())
			if tc.update {
				in.Operation = admissionv1.Update
				in.OldDeployment = goodDeployment()
			}
			r := Evaluate([]*Compiled{c}, in, noon)
			if got := len(r.Violations) > 0; got != tc.want {
				t.Fatalf("violation = %v, want %v: %v", got, tc.want, r.Violations)
			}
			if tc.want {
				v := r.Violations[0]
				if v.Rule != "r" || v.Field.String() != "object" || !strings.Contains(v.Message, tc.wantText) {
					t.Errorf("violation %+v lacks rule, field or %q", v, tc.wantText)
				}
			}
		})
	}
}

func TestCELCostLimit(t *testing.T) {
	heavy := "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a*b*c > 0)))"
	p := celPolicy(v1alpha1.CELRule{Name: "heavy", Expression: heavy, Message: "too heavy"})

	c, errs := compile(p, 100)
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs.ToAggregate())
	}
	r := Evaluate([]*Compiled{c}, createInput(goodDeployment()), noon)
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0].Message, "cost limit exceeded") {
		t.Fatalf("want the rule to fail closed on cost, got %v", r.Violations)
	}
	if !r.Denied() {
		t.Error("a rule over its cost limit must not admit")
	}

	// The same rule fits the default limit.
	r = Evaluate([]*Compiled{mustCompile(t, p)}, createInput(goodDeployment()), noon)
	if len(r.Violations) != 0 {
		t.Fatalf("within the default limit: %v", r.Violations)
	}
}

func TestCELCompileErrors(t *testing.T) {
	ok := v1alpha1.CELRule{Name: "ok", Expression: "true", Message: "m"}
	cases := map[string]struct {
		rule      v1alpha1.CELRule
		wantField string
		wantText  string
	}{
		"syntax": {
			rule:      v1alpha1.CELRule{Name: "bad", Expression: "object.spec.replicas >=", Message: "m"},
			wantField: "spec.rules.cel[2].expression", wantText: "does not compile",
		},
		"not bool": {
			rule:      v1alpha1.CELRule{Name: "bad", Expression: "object.spec.replicas", Message: "m"},
			wantField: "spec.rules.cel[2].expression", wantText: "must evaluate to bool, not dyn",
		},
		"int": {
			rule:      v1alpha1.CELRule{Name: "bad", Expression: "1 + 1", Message: "m"},
			wantField: "spec.rules.cel[2].expression", wantText: "not int",
		},
		"unknown variable": {
			rule:      v1alpha1.CELRule{Name: "bad", Expression: "request.user == 'x'", Message: "m"},
			wantField: "spec.rules.cel[2].expression", wantText: "undeclared reference to 'request'",
		},
		"empty expression": {
			rule:      v1alpha1.CELRule{Name: "bad", Expression: " ", Message: "m"},
			wantField: "spec.rules.cel[2].expression", wantText: "Required value",
		},
		"too long": {
			rule:      v1alpha1.CELRule{Name: "bad", Expression: "true" + strings.Repeat(" ", MaxCELExpressionLength), Message: "m"},
			wantField: "spec.rules.cel[2].expression", wantText: "Too long",
		},
		"missing message": {
			rule:      v1alpha1.CELRule{Name: "bad", Expression: "true"},
			wantField: "spec.rules.cel[2].message",
		},
		"duplicate name": {
			rule:      v1alpha1.CELRule{Name: "ok", Expression: "true", Message: "m"},
			wantField: "spec.rules.cel[2].name", wantText: "Duplicate value",
		},
		"built-in name": {
			rule:      v1alpha1.CELRule{Name: RuleReplicas, Expression: "true", Message: "m"},
			wantField: "spec.rules.cel[2].name", wantText: "built-in rule",
		},
		"bad name": {
			rule:      v1alpha1.CELRule{Name: "no spaces", Expression: "true", Message: "m"},
			wantField: "spec.rules.cel[2].name",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := celPolicy(ok, v1alpha1.CELRule{Name: "ok2", Expression: "false", Message: "m"}, tc.rule)
			errs := Validate(p)
			if len(errs) != 1 || errs[0].Field != tc.wantField || !strings.Contains(errs[0].Error(), tc.wantText) {
				t.Fatalf("want one error at %s with %q, got %v", tc.wantField, tc.wantText, errs)
			}
			_, err := Compile(p)
			ce, isCompileError := err.(*CompileError)
			if !isCompileError || ce.Policy != "cel" || len(ce.Errors) != 1 {
				t.Fatalf("Compile error = %#v, want a *CompileError with the same list", err)
			}
		})
	}
}

func TestValidatePolicy(t *testing.T) {
	cases := map[string]struct {
		mutate func(p *v1alpha1.DeploymentPolicy)
		want   []string // field paths
	}{
		"valid": {mutate: func(*v1alpha1.DeploymentPolicy) {}},
		"no name": {
			mutate: func(p *v1alpha1.DeploymentPolicy) { p.Name = "" },
			want:   []string{"metadata.name"},
		},
		"bad mode": {
			mutate: func(p *v1alpha1.DeploymentPolicy) { p.Spec.Mode = "Deny" },
			want:   []string{"spec.mode"},
		},
		"bad selector": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.NamespaceSelector.MatchLabels = map[string]string{"bad key!": "x"}
			},
			want: []string{"spec.namespaceSelector"},
		},
		"bad required label": {
			mutate: func(p *v1alpha1.DeploymentPolicy) { p.Spec.Rules.RequiredLabels = []string{"ok", "no spaces"} },
			want:   []string{"spec.rules.requiredLabels[1]"},
		},
		"bad registries": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.Rules.AllowedRegistries = []string{"", "https://r.io", "r.io/a@sha256"}
			},
			want: []string{"spec.rules.allowedRegistries[0]", "spec.rules.allowedRegistries[1]", "spec.rules.allowedRegistries[2]"},
		},
		"replica bounds inverted and negative": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.Rules.Replicas = &v1alpha1.ReplicaBounds{Min: i32(5), Max: i32(-1)}
			},
			want: []string{"spec.rules.replicas.max", "spec.rules.replicas.max"},
		},
		"rollout off cannot be required": {
			mutate: func(p *v1alpha1.DeploymentPolicy) { p.Spec.Rules.RequireRollout = []v1alpha1.DeliveryMode{"off"} },
			want:   []string{"spec.rules.requireRollout[0]"},
		},
		"bad bounds": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.Rules.RolloutBounds = &v1alpha1.RolloutBounds{MaxFirstStep: "0", MinSteps: i32(0), MaxErrorRate: "x"}
			},
			want: []string{"spec.rules.rolloutBounds.maxFirstStep", "spec.rules.rolloutBounds.minSteps", "spec.rules.rolloutBounds.maxErrorRate"},
		},
		"freeze windows": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.Rules.FreezeWindows = []v1alpha1.FreezeWindow{
					weekly("Mars/Olympus", "Friday", "16:00", "Monday", "08:00"),
					weekly("UTC", "Funday", "16:00", "Monday", "8:00"),
					weekly("UTC", "Monday", "08:00", "Monday", "08:00"),
					{Name: "both", TimeZone: "UTC", Weekly: &v1alpha1.WeeklyWindow{}, Dates: &v1alpha1.DateRange{}},
					{Name: "neither", TimeZone: "Local"},
					{Name: "backwards", TimeZone: "UTC", Dates: &v1alpha1.DateRange{From: "2027-01-02T00:00", To: "2027-01-01T00:00"}},
					{Name: "bad dates", TimeZone: "UTC", Dates: &v1alpha1.DateRange{From: "2027-01-02", To: "2027-01-01T25:00"}},
				}
			},
			want: []string{
				"spec.rules.freezeWindows[0].timeZone",
				"spec.rules.freezeWindows[1].weekly.from.day",
				"spec.rules.freezeWindows[1].weekly.to.time",
				"spec.rules.freezeWindows[1].name",
				"spec.rules.freezeWindows[2].weekly.to",
				"spec.rules.freezeWindows[2].name",
				"spec.rules.freezeWindows[3].dates",
				"spec.rules.freezeWindows[4].timeZone",
				"spec.rules.freezeWindows[4]",
				"spec.rules.freezeWindows[5].dates.to",
				"spec.rules.freezeWindows[6].dates.from",
				"spec.rules.freezeWindows[6].dates.to",
			},
		},
		"exceptions": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.Exceptions = []v1alpha1.PolicyException{
					{},
					{Name: "x", Expires: metav1Time(noon), Reason: "r", Rules: []string{"requiredLabel"}},
					{Selector: &metav1.LabelSelector{}, Expires: metav1Time(noon), Reason: "r"},
					{Namespace: "shop", Name: "x", Expires: metav1Time(noon), Reason: "r"},
				}
			},
			want: []string{
				"spec.exceptions[0]", "spec.exceptions[0].expires", "spec.exceptions[0].reason",
				"spec.exceptions[1].rules[0]",
				// After the compile errors: Compile keeps such exceptions
				// (exempting nothing); only Validate refuses them.
				"spec.exceptions[1].namespace", "spec.exceptions[2].namespace",
			},
		},
		"emergency bypass": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.EmergencyBypass = &v1alpha1.EmergencyBypass{Groups: []string{"sre", " "}, MaxDuration: &metav1.Duration{}}
			},
			want: []string{"spec.emergencyBypass.groups[1]", "spec.emergencyBypass.maxDuration"},
		},
		"emergency bypass without groups": {
			mutate: func(p *v1alpha1.DeploymentPolicy) { p.Spec.EmergencyBypass = &v1alpha1.EmergencyBypass{} },
			want:   []string{"spec.emergencyBypass.groups"},
		},
		"inject labels": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.InjectLabels = map[string]string{"sluice.dev/team": "x", "ok": "bad value!"}
			},
			want: []string{"spec.injectLabels[ok]", "spec.injectLabels[sluice.dev/team]"},
		},
		"rollout defaults": {
			mutate: func(p *v1alpha1.DeploymentPolicy) {
				p.Spec.RolloutDefaults = &v1alpha1.RolloutDefaults{Steps: "50,10"}
			},
			want: []string{"spec.rolloutDefaults.steps"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := strictPolicy("p", v1alpha1.ModeEnforce)
			tc.mutate(p)
			var got []string
			for _, e := range Validate(p) {
				got = append(got, e.Field)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("error fields (-want +got):\n%s\n%v", diff, Validate(p).ToAggregate())
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	if errs := Validate(nil); len(errs) != 1 {
		t.Errorf("Validate(nil) = %v, want one error", errs)
	}
	var _ field.ErrorList = Validate(nil)
}
