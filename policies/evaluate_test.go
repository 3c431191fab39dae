package policies

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestModes(t *testing.T) {
	d := goodDeployment()
	delete(d.Labels, "owner")
	cases := map[v1alpha1.PolicyMode]struct {
		denied       bool
		warnings     int
		auditCount   int
		fieldErrors  int
		denyContains string
	}{
		v1alpha1.ModeEnforce: {denied: true, fieldErrors: 1, denyContains: "metadata.labels[owner]: Forbidden: label \"owner\" is required"},
		v1alpha1.ModeWarn:    {warnings: 1},
		v1alpha1.ModeAudit:   {auditCount: 1},
	}
	for mode, tc := range cases {
		t.Run(string(mode), func(t *testing.T) {
			r := Evaluate([]*Compiled{mustCompile(t, strictPolicy("p", mode))}, createInput(d), noon)
			if r.Denied() != tc.denied {
				t.Errorf("Denied() = %v, want %v", r.Denied(), tc.denied)
			}
			if got := len(r.Warnings()); got != tc.warnings {
				t.Errorf("%d warnings, want %d: %v", got, tc.warnings, r.Warnings())
			}
			if got := len(r.ByMode(v1alpha1.ModeAudit)); got != tc.auditCount {
				t.Errorf("%d audit violations, want %d", got, tc.auditCount)
			}
			if got := len(r.FieldErrors()); got != tc.fieldErrors {
				t.Errorf("%d field errors, want %d", got, tc.fieldErrors)
			}
			if !strings.Contains(r.DenyMessage(), tc.denyContains) {
				t.Errorf("deny message %q lacks %q", r.DenyMessage(), tc.denyContains)
			}
			if !tc.denied && r.DenyMessage() != "" {
				t.Errorf("admitted request has deny message %q", r.DenyMessage())
			}
		})
	}
}

func TestEnforceListsEveryViolationInOneMessage(t *testing.T) {
	d := goodDeployment()
	delete(d.Labels, "owner")
	d.Spec.Replicas = i32(50)
	d.Annotations[v1alpha1.AnnotationStepInterval] = "fast"
	r := Evaluate([]*Compiled{mustCompile(t, strictPolicy("p", v1alpha1.ModeEnforce))}, createInput(d), noon)
	msg := r.DenyMessage()
	for _, want := range []string{
		"3 problem(s)",
		"metadata.annotations[sluice.dev/step-interval]: Invalid value",
		"metadata.labels[owner]: Forbidden",
		"spec.replicas: Forbidden: 50 replicas is more than the maximum of 10 (policy p, rule replicas)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("deny message lacks %q:\n%s", want, msg)
		}
	}
}

func TestMalformedAnnotationsDenyEvenWithoutPolicies(t *testing.T) {
	d := goodDeployment()
	d.Annotations[v1alpha1.AnnotationSteps] = "50,5"
	r := Evaluate(nil, createInput(d), noon)
	if !r.Denied() || len(r.Errors) != 1 || r.Errors[0].Field != "metadata.annotations[sluice.dev/steps]" {
		t.Fatalf("want one steps error and a denial, got %v", r.Errors)
	}
}

func TestMissingInput(t *testing.T) {
	if r := Evaluate(nil, Input{}, noon); !r.Denied() || len(r.Errors) != 1 {
		t.Errorf("nil Deployment: want a denial, got %+v", r)
	}
	if r := Evaluate(nil, Input{Deployment: goodDeployment()}, noon); !r.Denied() ||
		!strings.Contains(r.DenyMessage(), "Namespace object") {
		t.Errorf("nil Namespace: want a denial naming it, got %q", r.DenyMessage())
	}
}

func TestNamespaceSelector(t *testing.T) {
	d := goodDeployment()
	delete(d.Labels, "owner")
	prod := mustCompile(t, strictPolicy("prod-only", v1alpha1.ModeEnforce))
	all := strictPolicy("everywhere", v1alpha1.ModeWarn)
	all.Spec.NamespaceSelector = nil
	everywhere := mustCompile(t, all)

	in := createInput(d)
	in.Namespace.Labels["env"] = "dev"
	r := Evaluate([]*Compiled{prod, everywhere, nil}, in, noon)
	if diff := cmp.Diff([]string{"everywhere"}, r.Policies); diff != "" {
		t.Errorf("applicable policies (-want +got):\n%s", diff)
	}
	if r.Denied() || len(r.ByMode(v1alpha1.ModeWarn)) != 1 {
		t.Errorf("want one warning and no denial, got %v", r.Violations)
	}
}

func TestPoliciesInNameOrder(t *testing.T) {
	d := goodDeployment()
	delete(d.Labels, "owner")
	b := mustCompile(t, strictPolicy("b", v1alpha1.ModeEnforce))
	a := mustCompile(t, strictPolicy("a", v1alpha1.ModeAudit))
	r1 := Evaluate([]*Compiled{b, a}, createInput(d), noon)
	r2 := Evaluate([]*Compiled{a, b}, createInput(d), noon)
	if diff := cmp.Diff(r1, r2, cmp.Comparer(func(x, y *field.Path) bool { return x.String() == y.String() })); diff != "" {
		t.Errorf("result depends on input order (-first +second):\n%s", diff)
	}
	if r1.Violations[0].Policy != "a" || r1.Violations[1].Policy != "b" {
		t.Errorf("violations not in policy name order: %v", r1.Violations)
	}
}

func TestExceptions(t *testing.T) {
	expires := metav1.NewTime(noon.Add(time.Hour))
	cases := map[string]struct {
		exception v1alpha1.PolicyException
		now       time.Time
		exempted  bool
	}{
		"by namespace": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Expires: expires, Reason: "migration"},
			now:       noon, exempted: true,
		},
		"other namespace": {
			exception: v1alpha1.PolicyException{Namespace: "billing", Expires: expires, Reason: "migration"},
			now:       noon,
		},
		"by name": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Name: "checkout", Expires: expires, Reason: "migration"},
			now:       noon, exempted: true,
		},
		"by name without a namespace, as stored before that was refused: exempts nothing": {
			exception: v1alpha1.PolicyException{Name: "checkout", Expires: expires, Reason: "migration"},
			now:       noon,
		},
		"by selector without a namespace: exempts nothing": {
			exception: v1alpha1.PolicyException{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
				Expires: expires, Reason: "migration"},
			now: noon,
		},
		"by name in another namespace": {
			exception: v1alpha1.PolicyException{Namespace: "billing", Name: "checkout", Expires: expires, Reason: "migration"},
			now:       noon,
		},
		"namespace and other name": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Name: "cart", Expires: expires, Reason: "migration"},
			now:       noon,
		},
		"by label selector": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
				Expires: expires, Reason: "migration"},
			now: noon, exempted: true,
		},
		"label selector not matching": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cart"}},
				Expires: expires, Reason: "migration"},
			now: noon,
		},
		"limited to the broken rule": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Name: "checkout", Rules: []string{RuleRequiredLabels}, Expires: expires, Reason: "r"},
			now:       noon, exempted: true,
		},
		"limited to another rule": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Name: "checkout", Rules: []string{RuleReplicas}, Expires: expires, Reason: "r"},
			now:       noon,
		},
		"a second before expiry": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Name: "checkout", Expires: expires, Reason: "r"},
			now:       expires.Add(-time.Second), exempted: true,
		},
		"at expiry": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Name: "checkout", Expires: expires, Reason: "r"},
			now:       expires.Time,
		},
		"after expiry": {
			exception: v1alpha1.PolicyException{Namespace: "shop", Name: "checkout", Expires: expires, Reason: "r"},
			now:       expires.Add(time.Hour),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := strictPolicy("p", v1alpha1.ModeEnforce)
			p.Spec.Exceptions = []v1alpha1.PolicyException{tc.exception}
			d := goodDeployment()
			delete(d.Labels, "owner")
			r := Evaluate([]*Compiled{mustCompile(t, p)}, createInput(d), tc.now)
			if tc.exempted {
				if len(r.Violations) != 0 || len(r.Exempted) != 1 || r.Denied() {
					t.Fatalf("want the violation exempted, got violations %v exempted %v", r.Violations, r.Exempted)
				}
				if r.Exempted[0].Reason != tc.exception.Reason || r.Exempted[0].Rule != RuleRequiredLabels {
					t.Errorf("exemption %+v lacks reason or rule", r.Exempted[0])
				}
				return
			}
			if len(r.Violations) != 1 || len(r.Exempted) != 0 || !r.Denied() {
				t.Fatalf("want the violation to stand, got violations %v exempted %v", r.Violations, r.Exempted)
			}
		})
	}
}

func TestEmergencyBypass(t *testing.T) {
	sre := &Requester{Username: "alice", Groups: []string{"system:authenticated", "sre"}}
	dev := &Requester{Username: "bob", Groups: []string{"system:authenticated", "developers"}}
	until := noon.Add(time.Hour).Format(time.RFC3339)
	grant := &v1alpha1.EmergencyBypass{Groups: []string{"sre", "platform"}}
	const ownerRule = "requiredLabels metadata.labels[owner]"
	const reasonRule = "emergencyBypass metadata.annotations[sluice.dev/emergency-bypass]"
	const expiryRule = "emergencyBypass metadata.annotations[sluice.dev/emergency-bypass-expires]"
	cases := map[string]struct {
		grant       *v1alpha1.EmergencyBypass
		annotations map[string]string // nil: no bypass annotations
		who         *Requester
		compliant   bool // the Deployment breaks no rule
		wantRules   []string
		bypassed    int
		wantText    string // in the deny message, or in the warnings when admitted
	}{
		"no annotation": {
			grant: grant, who: sre, wantRules: []string{ownerRule},
		},
		"a member of an allowed group": {
			grant: grant, who: sre, annotations: map[string]string{"reason": "INC-42 checkout down", "expires": until}, bypassed: 1,
			wantText: `emergency bypass "INC-42 checkout down" by user "alice" until 2026-11-25T13:00:00Z admitted 1 violation(s) of policy p; this is audited`,
		},
		"a user outside the allowed groups": {
			grant: grant, who: dev, annotations: map[string]string{"reason": "INC-42", "expires": until},
			wantRules: []string{ownerRule, reasonRule},
			wantText:  `user "bob" may not bypass policy "p": only members of the groups sre, platform may`,
		},
		"an unknown requester": {
			grant: grant, annotations: map[string]string{"reason": "INC-42", "expires": until},
			wantRules: []string{ownerRule, reasonRule}, wantText: "an unauthenticated requester may not bypass",
		},
		"no reason": {
			grant: grant, who: sre, annotations: map[string]string{"reason": "  ", "expires": until},
			wantRules: []string{ownerRule, reasonRule}, wantText: "needs a reason",
		},
		"no expiry": {
			grant: grant, who: sre, annotations: map[string]string{"reason": "INC-42"},
			wantRules: []string{ownerRule, expiryRule}, wantText: "annotation sluice.dev/emergency-bypass-expires is required",
		},
		"a malformed expiry": {
			grant: grant, who: sre, annotations: map[string]string{"reason": "INC-42", "expires": "tomorrow"},
			wantRules: []string{ownerRule, expiryRule}, wantText: `"tomorrow" is not an RFC 3339 time`,
		},
		"expired": {
			grant: grant, who: sre, annotations: map[string]string{"reason": "INC-42", "expires": noon.Format(time.RFC3339)},
			wantRules: []string{ownerRule, expiryRule}, wantText: "the emergency bypass expired at 2026-11-25T12:00:00Z",
		},
		"beyond the longest bypass": {
			grant: &v1alpha1.EmergencyBypass{Groups: []string{"sre"}, MaxDuration: &metav1.Duration{Duration: 30 * time.Minute}},
			who:   sre, annotations: map[string]string{"reason": "INC-42", "expires": until},
			wantRules: []string{ownerRule, expiryRule}, wantText: "allows a bypass of at most 30m0s from now (until 2026-11-25T12:30:00Z)",
		},
		"a policy without bypass": {
			who: sre, annotations: map[string]string{"reason": "INC-42", "expires": until},
			wantRules: []string{ownerRule, reasonRule}, wantText: `policy "p" allows no emergency bypass; remove annotation sluice.dev/emergency-bypass`,
		},
		"an expired bypass on a compliant Deployment blocks nothing": {
			grant: grant, who: dev, compliant: true, annotations: map[string]string{"reason": "INC-42", "expires": noon.Add(-time.Hour).Format(time.RFC3339)},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := strictPolicy("p", v1alpha1.ModeEnforce)
			p.Spec.EmergencyBypass = tc.grant
			d := goodDeployment()
			if !tc.compliant {
				delete(d.Labels, "owner")
			}
			if tc.annotations != nil {
				d.Annotations[v1alpha1.AnnotationEmergencyBypass] = tc.annotations["reason"]
				if e, ok := tc.annotations["expires"]; ok {
					d.Annotations[v1alpha1.AnnotationEmergencyBypassExpires] = e
				}
			}
			in := createInput(d)
			in.Requester = tc.who
			r := Evaluate([]*Compiled{mustCompile(t, p)}, in, noon)
			if r.Denied() != (len(tc.wantRules) > 0) {
				t.Errorf("Denied() = %v, want %v: %s", r.Denied(), len(tc.wantRules) > 0, r.DenyMessage())
			}
			if diff := cmp.Diff(tc.wantRules, ruleFields(r.Violations)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
			if len(r.Bypassed) != tc.bypassed {
				t.Errorf("%d bypassed, want %d", len(r.Bypassed), tc.bypassed)
			}
			if tc.bypassed > 0 && (r.BypassedBy != tc.who || !r.BypassExpires.Equal(noon.Add(time.Hour))) {
				t.Errorf("bypass recorded as by %v until %s", r.BypassedBy, r.BypassExpires)
			}
			text := r.DenyMessage() + strings.Join(r.Warnings(), "\n")
			if !strings.Contains(text, tc.wantText) {
				t.Errorf("answer lacks %q:\n%s", tc.wantText, text)
			}
		})
	}
}

func TestTruncateKeepsRunesWhole(t *testing.T) {
	cases := map[string]struct {
		in   string
		n    int
		want string
	}{
		"short":             {in: "abc", n: 10, want: "abc"},
		"exact":             {in: "abcdef", n: 6, want: "abcdef"},
		"ascii":             {in: "abcdefgh", n: 6, want: "abc..."},
		"inside a rune":     {in: "ab\u00e9\u00e9\u00e9", n: 7, want: "ab\u00e9..."},
		"inside a 4-byte":   {in: "\U0001F600\U0001F600", n: 6, want: "..."},
		"tiny limit":        {in: "abcdef", n: 1, want: "..."},
		"after a rune ends": {in: "\u00e9\u00e9\u00e9\u00e9", n: 7, want: "\u00e9\u00e9..."},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := Truncate(tc.in, tc.n)
			if got != tc.want || !utf8.ValidString(got) || len(got) > max(tc.n, 3) {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestInjectLabelsAndDefaults(t *testing.T) {
	a := strictPolicy("a-team", v1alpha1.ModeAudit)
	a.Spec.InjectLabels = map[string]string{"cost-center": "42", "tier": "gold"}
	a.Spec.RolloutDefaults = &v1alpha1.RolloutDefaults{Steps: "2,10,50", MaxErrorRate: "0.5%",
		Analysis: &v1alpha1.AnalysisDefaults{MinSamples: i32(500)}}
	b := strictPolicy("b-platform", v1alpha1.ModeAudit)
	b.Spec.InjectLabels = map[string]string{"tier": "silver", "managed-by": "platform"}
	b.Spec.RolloutDefaults = &v1alpha1.RolloutDefaults{Steps: "1,2,3", StepInterval: &metav1.Duration{Duration: time.Minute}}

	d := goodDeployment()
	delete(d.Annotations, v1alpha1.AnnotationSteps)
	d.Annotations[v1alpha1.AnnotationMaxErrorRate] = "0.25%"
	r := Evaluate([]*Compiled{mustCompile(t, b), mustCompile(t, a)}, createInput(d), noon)

	if diff := cmp.Diff(map[string]string{"cost-center": "42", "tier": "gold", "managed-by": "platform"}, r.InjectLabels); diff != "" {
		t.Errorf("inject labels (-want +got):\n%s", diff)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], `"a-team" and "b-platform" both inject label "tier"`) {
		t.Errorf("notes %q do not explain the label conflict", r.Notes)
	}
	want := v1alpha1.DefaultDelivery()
	want.Mode = v1alpha1.ModeCanary
	want.Service = "checkout"
	want.Steps = []v1alpha1.BasisPoints{200, 1000, 5000}
	want.StepInterval = &metav1.Duration{Duration: time.Minute}
	rate := v1alpha1.BasisPoints(25)
	want.MaxErrorRate = &rate
	want.Analysis.MinSamples = 500
	if diff := cmp.Diff(want, r.Delivery); diff != "" {
		t.Errorf("resolved delivery (-want +got):\n%s", diff)
	}
	if r.Defaults.MaxErrorRate == nil || *r.Defaults.MaxErrorRate != 50 {
		t.Errorf("team defaults lost the policy's error rate: %+v", r.Defaults)
	}
}

func TestUpdateWithoutTemplateChangeDuringFreeze(t *testing.T) {
	p := strictPolicy("p", v1alpha1.ModeEnforce)
	p.Spec.Rules = v1alpha1.PolicyRules{FreezeWindows: []v1alpha1.FreezeWindow{{
		Name: "always", TimeZone: "UTC", Dates: &v1alpha1.DateRange{From: "2026-01-01T00:00", To: "2027-01-01T00:00"}}}}
	c := mustCompile(t, p)
	old := goodDeployment()
	cases := map[string]struct {
		mutate func(d *appsv1.Deployment)
		old    *appsv1.Deployment
		frozen bool
	}{
		"scale only":           {mutate: func(d *appsv1.Deployment) { d.Spec.Replicas = i32(9) }, old: old},
		"annotation only":      {mutate: func(d *appsv1.Deployment) { d.Annotations["x"] = "y" }, old: old},
		"new image":            {mutate: func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image += "-2" }, old: old, frozen: true},
		"unknown old template": {mutate: func(d *appsv1.Deployment) {}, old: nil, frozen: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := goodDeployment()
			tc.mutate(d)
			in := createInput(d)
			in.Operation = "UPDATE"
			in.OldDeployment = tc.old
			r := Evaluate([]*Compiled{c}, in, noon)
			if r.Denied() != tc.frozen {
				t.Errorf("Denied() = %v, want %v: %v", r.Denied(), tc.frozen, r.Violations)
			}
		})
	}
}

func TestTally(t *testing.T) {
	d := goodDeployment()
	delete(d.Labels, "owner")
	d.Spec.Replicas = i32(1)
	r := Evaluate([]*Compiled{
		mustCompile(t, strictPolicy("p", v1alpha1.ModeWarn)),
		mustCompile(t, strictPolicy("other", v1alpha1.ModeEnforce)),
	}, createInput(d), noon)
	got := Tally([]v1alpha1.ViolationCount{{Rule: RuleReplicas, Mode: v1alpha1.ModeWarn, Count: 4}}, "p", r)
	want := []v1alpha1.ViolationCount{
		{Rule: RuleReplicas, Mode: v1alpha1.ModeWarn, Count: 5},
		{Rule: RuleRequiredLabels, Mode: v1alpha1.ModeWarn, Count: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Tally (-want +got):\n%s", diff)
	}
}
