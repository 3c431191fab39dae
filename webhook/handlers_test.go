package webhook

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestMutatingHandlerPatch(t *testing.T) {
	f := newFixture(t, shopNamespace())
	f.policy(t, "labels", v1alpha1.ModeAudit, func(s *v1alpha1.DeploymentPolicySpec) {
		s.InjectLabels = map[string]string{"cost-center": "42"}
	})
	f.policy(t, "other-namespaces", v1alpha1.ModeAudit, func(s *v1alpha1.DeploymentPolicySpec) {
		s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		s.InjectLabels = map[string]string{"ignored": "yes"}
	})
	d := testDeployment()
	resp := f.admit(t, PathMutateDeployment, admissionv1.Create, d, nil, false)
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response %+v, want allowed with a JSON patch", resp)
	}
	rev := mustRevision(t, d, map[string]string{"cost-center": "42"})
	want := `[{"op":"add","path":"/metadata/labels","value":{"cost-center":"42","sluice.dev/revision":"` + rev +
		`","sluice.dev/service":"web","sluice.dev/team":"payments","sluice.dev/track":"stable"}},` +
		`{"op":"add","path":"/spec/template/metadata/labels/cost-center","value":"42"},` +
		`{"op":"add","path":"/spec/template/metadata/labels/sluice.dev~1revision","value":"` + rev + `"},` +
		`{"op":"add","path":"/spec/template/metadata/labels/sluice.dev~1service","value":"web"},` +
		`{"op":"add","path":"/spec/template/metadata/labels/sluice.dev~1team","value":"payments"},` +
		`{"op":"add","path":"/spec/template/metadata/labels/sluice.dev~1track","value":"stable"}]`
	if string(resp.Patch) != want {
		t.Errorf("patch\n got %s\nwant %s", resp.Patch, want)
	}

	// Applying the patch and admitting again gives no patch.
	var ops []PatchOp
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	patched := applyPatch(t, d, ops)
	again := f.admit(t, PathMutateDeployment, admissionv1.Update, patched, patched, false)
	if !again.Allowed || len(again.Patch) != 0 {
		t.Errorf("re-admission: allowed=%v patch=%s, want allowed without patch", again.Allowed, again.Patch)
	}
	if got := testutil.ToFloat64(f.h.metrics.requests.WithLabelValues("CREATE", kindDeployment, DecisionPatched)); got != 1 {
		t.Errorf("patched requests metric = %v, want 1", got)
	}
}

func TestMutatingHandlerPausesNewRevision(t *testing.T) {
	f := newFixture(t, shopNamespace())
	stored := testDeployment(optedIn)
	created := f.admit(t, PathMutateDeployment, admissionv1.Create, stored, nil, false)
	var ops []PatchOp
	if err := json.Unmarshal(created.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	stored = applyPatch(t, stored, ops)
	if stored.Spec.Paused {
		t.Fatal("CREATE paused the Deployment")
	}
	update := stored.DeepCopy()
	update.Spec.Template.Spec.Containers[0].Image = "registry.example.com/web:2.0"
	resp := f.admit(t, PathMutateDeployment, admissionv1.Update, update, stored, false)
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	got := applyPatch(t, update, ops)
	newRev := mustRevision(t, update, nil)
	if !got.Spec.Paused || got.Annotations[v1alpha1.AnnotationPendingRevision] != newRev || got.Spec.Template.Labels[v1alpha1.LabelRevision] != newRev {
		t.Errorf("paused=%v pending=%q revision=%q, want paused with pending and revision %s",
			got.Spec.Paused, got.Annotations[v1alpha1.AnnotationPendingRevision], got.Spec.Template.Labels[v1alpha1.LabelRevision], newRev)
	}
}

func TestValidatingHandler(t *testing.T) {
	failedRev := mustRevision(t, testDeployment(optedIn, withImage("registry.example.com/web:bad")), nil)
	canaryRev := mustRevision(t, sluiceCanary(), nil)
	rollout := func(retry string) *v1alpha1.Rollout {
		return &v1alpha1.Rollout{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "r-uid"},
			Spec:       v1alpha1.RolloutSpec{RetryRevision: retry},
			Status: v1alpha1.RolloutStatus{FailedRevisions: []v1alpha1.FailedRevision{{
				Revision: failedRev, Reason: "error rate 12% above 1%", Time: metav1.NewTime(fixtureNow.Add(-time.Hour)),
			}}},
		}
	}
	enforce := func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
		s.Rules.DisallowLatestTag = true
	}
	freeze := func(from, to time.Time) func(s *v1alpha1.DeploymentPolicySpec) {
		return func(s *v1alpha1.DeploymentPolicySpec) {
			s.Rules.FreezeWindows = []v1alpha1.FreezeWindow{{Name: "launch", TimeZone: "UTC", Reason: "launch day",
				Dates: &v1alpha1.DateRange{From: from.Format("2006-01-02T15:04"), To: to.Format("2006-01-02T15:04")}}}
		}
	}
	type policy struct {
		name string
		mode v1alpha1.PolicyMode
		spec func(*v1alpha1.DeploymentPolicySpec)
	}
	tests := map[string]struct {
		rollout      *v1alpha1.Rollout
		user         *authenticationv1.UserInfo // default: developer
		policies     []policy
		op           admissionv1.Operation
		d, old       *appsv1.Deployment
		dryRun       bool
		wantAllowed  bool
		wantCode     int32
		wantInMsg    []string
		wantWarnings []string
		wantEvents   []string
	}{
		"no policies: allowed": {
			op: admissionv1.Create, d: testDeployment(), wantAllowed: true,
		},
		"Enforce lists every violation with its field path, and Warn warnings ride along": {
			policies: []policy{{"strict", v1alpha1.ModeEnforce, enforce},
				{"soft", v1alpha1.ModeWarn, func(s *v1alpha1.DeploymentPolicySpec) { s.Rules.RequireReadinessProbe = true }}},
			op: admissionv1.Create, d: testDeployment(withImage("registry.example.com/web:latest")),
			wantCode: http.StatusUnprocessableEntity,
			wantInMsg: []string{`Deployment.apps "web" is invalid`, "metadata.labels", "owner",
				"spec.template.spec.containers[0].image", "policy strict, rule requiredLabels", "rule disallowLatestTag"},
			wantWarnings: []string{"readiness"},
		},
		"Warn admits with warnings": {
			policies: []policy{{"soft", v1alpha1.ModeWarn, enforce}},
			op:       admissionv1.Create, d: testDeployment(), wantAllowed: true,
			wantWarnings: []string{"owner"},
		},
		"Audit admits silently and emits an Event": {
			policies: []policy{{"watch", v1alpha1.ModeAudit, enforce}},
			op:       admissionv1.Create, d: testDeployment(), wantAllowed: true,
			wantEvents: []string{"Warning PolicyAudit", "owner"},
		},
		"Audit on a dry run emits no Event": {
			policies: []policy{{"watch", v1alpha1.ModeAudit, enforce}},
			op:       admissionv1.Create, d: testDeployment(), dryRun: true, wantAllowed: true,
		},
		"malformed annotation denied with its path and syntax": {
			op: admissionv1.Create, d: testDeployment(withAnnotations(v1alpha1.AnnotationSteps, "five")),
			wantCode:  http.StatusUnprocessableEntity,
			wantInMsg: []string{"metadata.annotations[sluice.dev/steps]", "1,5,25,50"},
		},
		"a name too long for a service label needs the annotation": {
			op: admissionv1.Create, d: testDeployment(func(d *appsv1.Deployment) {
				d.Name = "a-very-long-deployment-name-that-is-longer-than-sixty-three-characters-x"
			}),
			wantCode:  http.StatusUnprocessableEntity,
			wantInMsg: []string{"metadata.name", "sluice.dev/service"},
		},
		"inside a freeze window: denied": {
			policies: []policy{{"freeze", v1alpha1.ModeEnforce, freeze(fixtureNow.Add(-time.Hour), fixtureNow.Add(time.Hour))}},
			op:       admissionv1.Update, d: testDeployment(withImage("registry.example.com/web:2.0")), old: testDeployment(),
			wantCode:  http.StatusUnprocessableEntity,
			wantInMsg: []string{"launch"},
		},
		"after a freeze window: allowed": {
			policies: []policy{{"freeze", v1alpha1.ModeEnforce, freeze(fixtureNow.Add(-2*time.Hour), fixtureNow.Add(-time.Minute))}},
			op:       admissionv1.Update, d: testDeployment(withImage("registry.example.com/web:2.0")), old: testDeployment(),
			wantAllowed: true,
		},
		"an unexpired exception admits": {
			policies: []policy{{"strict", v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
				enforce(s)
				s.Exceptions = []v1alpha1.PolicyException{{Namespace: "shop", Name: "web", Reason: "migration", Expires: metav1.NewTime(fixtureNow.Add(time.Hour))}}
			}}},
			op: admissionv1.Create, d: testDeployment(), wantAllowed: true,
		},
		"an expired exception does not": {
			policies: []policy{{"strict", v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
				enforce(s)
				s.Exceptions = []v1alpha1.PolicyException{{Namespace: "shop", Name: "web", Reason: "migration", Expires: metav1.NewTime(fixtureNow.Add(-time.Second))}}
			}}},
			op: admissionv1.Create, d: testDeployment(), wantCode: http.StatusUnprocessableEntity, wantInMsg: []string{"owner"},
		},
		"emergency bypass by an allowed group admits, warns and is audited": {
			policies: []policy{{"strict", v1alpha1.ModeEnforce, bypassable(enforce)}},
			user:     &sre,
			op:       admissionv1.Create, d: testDeployment(withBypass("INC-42 checkout down", fixtureNow.Add(time.Hour))),
			wantAllowed: true, wantWarnings: []string{`emergency bypass "INC-42 checkout down" by user "alice@example.com" until 2026-11-25T13:00:00Z`},
			wantEvents: []string{"Warning EmergencyBypass", "INC-42", `user "alice@example.com"`},
		},
		"emergency bypass by a user outside the allowed groups is denied": {
			policies: []policy{{"strict", v1alpha1.ModeEnforce, bypassable(enforce)}},
			op:       admissionv1.Create, d: testDeployment(withBypass("INC-42", fixtureNow.Add(time.Hour))),
			wantCode: http.StatusUnprocessableEntity,
			wantInMsg: []string{"metadata.annotations[sluice.dev/emergency-bypass]",
				`user "bob@example.com" may not bypass policy "strict": only members of the groups sre may`},
		},
		"an expired emergency bypass is denied": {
			policies: []policy{{"strict", v1alpha1.ModeEnforce, bypassable(enforce)}},
			user:     &sre,
			op:       admissionv1.Create, d: testDeployment(withBypass("INC-42", fixtureNow.Add(-time.Second))),
			wantCode:  http.StatusUnprocessableEntity,
			wantInMsg: []string{"metadata.annotations[sluice.dev/emergency-bypass-expires]", "expired at 2026-11-25T11:59:59Z"},
		},
		"a rolled-back revision is refused": {
			rollout: rollout(""),
			op:      admissionv1.Update, d: testDeployment(optedIn, withImage("registry.example.com/web:bad")), old: testDeployment(optedIn),
			wantCode:  http.StatusUnprocessableEntity,
			wantInMsg: []string{"spec.template", failedRev, "error rate 12% above 1%", "sluice retry web -n shop"},
		},
		"a rolled-back revision named by retryRevision is allowed": {
			rollout: rollout(failedRev),
			op:      admissionv1.Update, d: testDeployment(optedIn, withImage("registry.example.com/web:bad")), old: testDeployment(optedIn),
			wantAllowed: true,
		},
		"an update that keeps the rolled-back revision is allowed": {
			rollout: rollout(""),
			op:      admissionv1.Update, d: testDeployment(optedIn, withImage("registry.example.com/web:bad"), withLabels("x", "y")),
			old:         testDeployment(optedIn, withImage("registry.example.com/web:bad")),
			wantAllowed: true,
		},
		"Sluice's canary of the pending revision skips policies": {
			rollout:  canaryRollout(canaryRev),
			user:     &sluiceUser,
			policies: []policy{{"strict", v1alpha1.ModeEnforce, enforce}},
			op:       admissionv1.Create, d: sluiceCanary(), wantAllowed: true,
		},
		"Sluice's canary of another revision does not": {
			rollout:  canaryRollout("0123456789"),
			user:     &sluiceUser,
			policies: []policy{{"strict", v1alpha1.ModeEnforce, enforce}},
			op:       admissionv1.Create, d: sluiceCanary(),
			wantCode: http.StatusUnprocessableEntity, wantInMsg: []string{"owner"},
		},
		"Sluice's write with a forged Rollout UID does not": {
			rollout:  canaryRollout(canaryRev),
			user:     &sluiceUser,
			policies: []policy{{"strict", v1alpha1.ModeEnforce, enforce}},
			op:       admissionv1.Create, d: testDeployment(canaryOf("web", "forged"), withAnnotations(v1alpha1.AnnotationService, "web")),
			wantCode: http.StatusUnprocessableEntity, wantInMsg: []string{"owner"},
		},
		"a canary written by anyone else is judged like any Deployment": {
			rollout:  canaryRollout(canaryRev),
			policies: []policy{{"strict", v1alpha1.ModeEnforce, enforce}},
			op:       admissionv1.Create, d: sluiceCanary(),
			wantCode: http.StatusUnprocessableEntity, wantInMsg: []string{"owner", "latest"},
		},
		"an edit of Sluice's canary by anyone else is judged too": {
			rollout:  canaryRollout(canaryRev),
			policies: []policy{{"strict", v1alpha1.ModeEnforce, enforce}},
			op:       admissionv1.Update, d: sluiceCanary(withImage("evil.example.com/web:1")),
			old:      sluiceCanary(withLabels(v1alpha1.LabelTrack, v1alpha1.TrackCanary)),
			wantCode: http.StatusUnprocessableEntity, wantInMsg: []string{"owner"},
		},
		"a forged owner reference does not disable the rolled-back revision guard": {
			rollout:  rollout(""),
			op:       admissionv1.Update,
			d:        testDeployment(optedIn, withImage("registry.example.com/web:bad"), canaryOf("web", "r-uid"), named("web")),
			old:      testDeployment(optedIn, canaryOf("web", "r-uid"), named("web")),
			wantCode: http.StatusUnprocessableEntity, wantInMsg: []string{failedRev},
		},
		"a Warn policy that does not compile is reported, not silently skipped": {
			policies: []policy{{"broken", v1alpha1.ModeWarn, func(s *v1alpha1.DeploymentPolicySpec) {
				s.Rules.CEL = []v1alpha1.CELRule{{Name: "x", Expression: "object.spec.replicas >", Message: "m"}}
			}}},
			op: admissionv1.Create, d: testDeployment(), wantAllowed: true,
			wantWarnings: []string{"DeploymentPolicy broken is not applied"},
		},
		"an Enforce policy that does not compile fails closed, with the reason": {
			policies: []policy{{"broken", v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
				s.Rules.CEL = []v1alpha1.CELRule{{Name: "x", Expression: "object.spec.replicas >", Message: "m"}}
			}}},
			op: admissionv1.Create, d: testDeployment(),
			wantCode: http.StatusUnprocessableEntity, wantInMsg: []string{"DeploymentPolicy broken (Enforce)", "does not compile", "object.spec.replicas >"},
		},
		"Sluice's own namespace is not governed": {
			policies: []policy{{"strict", v1alpha1.ModeEnforce, enforce}},
			op:       admissionv1.Create, d: testDeployment(func(d *appsv1.Deployment) { d.Namespace = "sluice-system" }), wantAllowed: true,
		},
		"an unknown namespace is a retryable error": {
			op: admissionv1.Create, d: testDeployment(func(d *appsv1.Deployment) { d.Namespace = "nowhere" }),
			wantCode: http.StatusServiceUnavailable, wantInMsg: []string{"namespace nowhere is not known"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, shopNamespace())
			if tc.rollout != nil {
				if err := f.client.Create(t.Context(), tc.rollout); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range tc.policies {
				f.policy(t, p.name, p.mode, p.spec)
			}
			if tc.user != nil {
				f.user = *tc.user
			}
			resp := f.admit(t, PathValidateDeployment, tc.op, tc.d, tc.old, tc.dryRun)
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v; result %+v", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if !tc.wantAllowed {
				if resp.Result == nil || resp.Result.Code != tc.wantCode {
					t.Fatalf("result %+v, want code %d", resp.Result, tc.wantCode)
				}
				for _, s := range tc.wantInMsg {
					if !strings.Contains(resp.Result.Message, s) {
						t.Errorf("message %q lacks %q", resp.Result.Message, s)
					}
				}
			}
			checkContainsAll(t, "warnings", resp.Warnings, tc.wantWarnings)
			if len(tc.wantWarnings) == 0 && len(resp.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", resp.Warnings)
			}
			evs := f.events()
			checkContainsAll(t, "events", evs, tc.wantEvents)
			if len(tc.wantEvents) == 0 && len(evs) > 0 {
				t.Errorf("unexpected events %q", evs)
			}
		})
	}
}

// checkContainsAll checks that the joined items contain every wanted
// substring.
func checkContainsAll(t *testing.T, what string, items, want []string) {
	t.Helper()
	joined := strings.Join(items, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("%s %q lack %q", what, items, w)
		}
	}
}

func TestValidatingHandlerCountsViolations(t *testing.T) {
	f := newFixture(t, shopNamespace())
	f.policy(t, "watch", v1alpha1.ModeAudit, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
	})
	f.policy(t, "bypassable", v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.DisallowLatestTag = true
		s.EmergencyBypass = &v1alpha1.EmergencyBypass{Groups: []string{"sre"}}
	})
	f.user = sre
	d := testDeployment(withImage("web:latest"), withBypass("INC-1", fixtureNow.Add(time.Hour)))
	for range 3 {
		if resp := f.admit(t, PathValidateDeployment, admissionv1.Create, d, nil, false); !resp.Allowed {
			t.Fatalf("denied: %+v", resp.Result)
		}
	}
	f.admit(t, PathValidateDeployment, admissionv1.Create, d, nil, true) // dry run: not counted
	if got := testutil.ToFloat64(f.h.metrics.violations.WithLabelValues("watch", "requiredLabels", "Audit")); got != 3 {
		t.Errorf("audit violations metric = %v, want 3", got)
	}
	if got := testutil.ToFloat64(f.h.metrics.bypasses.WithLabelValues("bypassable", "shop")); got != 3 {
		t.Errorf("bypass metric = %v, want 3", got)
	}
	if got := testutil.ToFloat64(f.h.metrics.requests.WithLabelValues("CREATE", kindDeployment, DecisionWarned)); got != 4 {
		t.Errorf("warned requests = %v, want 4", got)
	}
	want := map[string][]v1alpha1.ViolationCount{
		// watch does not allow the bypass, so the annotation is a violation of it.
		"watch":      {{Rule: "emergencyBypass", Mode: v1alpha1.ModeAudit, Count: 3}, {Rule: "requiredLabels", Mode: v1alpha1.ModeAudit, Count: 3}},
		"bypassable": {{Rule: "disallowLatestTag", Mode: v1alpha1.ModeEnforce, Count: 3}},
	}
	if diff := cmp.Diff(want, f.h.audit.take()); diff != "" {
		t.Errorf("pending status counts (-want +got):\n%s", diff)
	}
}

func TestPolicyHandler(t *testing.T) {
	tests := map[string]struct {
		spec        v1alpha1.DeploymentPolicySpec
		wantAllowed bool
		wantInMsg   []string
	}{
		"valid": {spec: v1alpha1.DeploymentPolicySpec{Mode: v1alpha1.ModeEnforce,
			Rules: v1alpha1.PolicyRules{CEL: []v1alpha1.CELRule{{Name: "two", Expression: "object.spec.replicas >= 2", Message: "at least 2"}}}},
			wantAllowed: true},
		"CEL that does not compile and an unknown time zone": {spec: v1alpha1.DeploymentPolicySpec{Mode: v1alpha1.ModeEnforce,
			Rules: v1alpha1.PolicyRules{
				CEL: []v1alpha1.CELRule{{Name: "bad", Expression: "object.spec.replicas >=", Message: "m"}},
				FreezeWindows: []v1alpha1.FreezeWindow{{Name: "w", TimeZone: "Mars/Olympus",
					Dates: &v1alpha1.DateRange{From: "2026-12-01T00:00", To: "2026-12-02T00:00"}}},
			}},
			wantInMsg: []string{`DeploymentPolicy.sluice.dev "p" is invalid`, "spec.rules.cel[0].expression", "spec.rules.freezeWindows[0].timeZone"}},
		"invalid selector": {spec: v1alpha1.DeploymentPolicySpec{Mode: v1alpha1.ModeEnforce,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Near"}}}},
			wantInMsg: []string{"spec.namespaceSelector"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			p := &v1alpha1.DeploymentPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: "sluice.dev/v1alpha1", Kind: "DeploymentPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tc.spec,
			}
			_, resp := f.serve(t, PathValidateDeploymentPolicy, "application/json", reviewBody(t, admissionv1.AdmissionRequest{
				UID: "p1", Kind: metav1.GroupVersionKind{Group: "sluice.dev", Version: "v1alpha1", Kind: "DeploymentPolicy"},
				Name: "p", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: mustJSON(t, p)},
			}))
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			for _, s := range tc.wantInMsg {
				if !strings.Contains(resp.Result.Message, s) {
					t.Errorf("message %q lacks %q", resp.Result.Message, s)
				}
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	valid := func(mod func(*admissionv1.AdmissionRequest)) []byte {
		req := admissionv1.AdmissionRequest{UID: "x", Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Namespace: "shop", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: mustJSON(t, testDeployment())}}
		mod(&req)
		return reviewBody(t, req)
	}
	tests := map[string]struct {
		path, contentType string
		body              []byte
		wantInMsg         string
	}{
		"not JSON":           {PathValidateDeployment, "application/json", []byte("{not json"), ""},
		"wrong content type": {PathMutateDeployment, "text/plain", valid(func(*admissionv1.AdmissionRequest) {}), "contentType"},
		"empty body":         {PathMutateDeployment, "application/json", nil, ""},
		"empty review":       {PathValidateDeployment, "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), "uid and operation"},
		"not a Deployment": {PathMutateDeployment, "application/json", valid(func(r *admissionv1.AdmissionRequest) {
			r.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
		}), "apps/v1 Deployments"},
		"object is not a Deployment": {PathValidateDeployment, "application/json", valid(func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw = []byte(`{"spec":{"replicas":"many"}}`)
		}), "decode object as a Deployment"},
		"UPDATE without old object": {PathValidateDeployment, "application/json", valid(func(r *admissionv1.AdmissionRequest) {
			r.Operation = admissionv1.Update
		}), "no oldObject"},
		"policy webhook given a Deployment": {PathValidateDeploymentPolicy, "application/json", valid(func(*admissionv1.AdmissionRequest) {}), "DeploymentPolicies"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, shopNamespace())
			_, resp := f.serve(t, tc.path, tc.contentType, tc.body)
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
				t.Fatalf("response %+v, want a 400 denial", resp)
			}
			if !strings.Contains(resp.Result.Message, tc.wantInMsg) {
				t.Errorf("message %q lacks %q", resp.Result.Message, tc.wantInMsg)
			}
		})
	}
}

func TestNotSyncedRefuses(t *testing.T) {
	f := newFixture(t, shopNamespace())
	f.w.synced.Store(false)
	for _, path := range []string{PathMutateDeployment, PathValidateDeployment} {
		resp := f.admit(t, path, admissionv1.Create, testDeployment(), nil, false)
		if resp.Allowed || resp.Result.Code != http.StatusServiceUnavailable {
			t.Errorf("%s before sync: %+v, want a 503 refusal", path, resp)
		}
	}
	if err := f.w.ReadyCheck()(nil); err == nil {
		t.Error("ReadyCheck passes before sync")
	}
	f.w.synced.Store(true)
	if err := f.w.ReadyCheck()(nil); err != nil {
		t.Errorf("ReadyCheck after sync: %v", err)
	}
}

// TestConcurrentAdmissionsShareThePreparedNamespace admits from many
// goroutines at once with CEL rules reading the namespace, which is prepared
// once and shared (run with -race to check the sharing).
func TestConcurrentAdmissionsShareThePreparedNamespace(t *testing.T) {
	ns := shopNamespace()
	ns.ResourceVersion = "7"
	ns.Spec.Finalizers = []corev1.FinalizerName{"kubernetes"}
	f := newFixture(t, ns)
	f.policy(t, "ns-rules", v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.CEL = []v1alpha1.CELRule{
			{Name: "team", Expression: "namespaceObject.metadata.labels['sluice.dev/team'] == 'payments'", Message: "payments only"},
			{Name: "finalized", Expression: "namespaceObject.spec.finalizers.exists(f, f == 'kubernetes')", Message: "needs the finalizer"},
		}
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if resp := f.admit(t, PathValidateDeployment, admissionv1.Create, testDeployment(), nil, true); !resp.Allowed {
					t.Errorf("denied: %+v", resp.Result)
					return
				}
			}
		}()
	}
	wg.Wait()
}
