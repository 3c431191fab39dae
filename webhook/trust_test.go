package webhook

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// TestMutatingHandlerTrustsTheCallerNotTheObject: the same Deployment, a
// Rollout's canary by name and owner reference, is labelled canary only when
// Sluice writes it (or it is stored as one already).
func TestMutatingHandlerTrustsTheCallerNotTheObject(t *testing.T) {
	stored := sluiceCanary(withLabels(v1alpha1.LabelTrack, v1alpha1.TrackCanary))
	tests := map[string]struct {
		user      authenticationv1.UserInfo
		op        admissionv1.Operation
		old       bool // UPDATE of stored
		wantTrack string
	}{
		"created by Sluice":                    {user: sluiceUser, op: admissionv1.Create, wantTrack: v1alpha1.TrackCanary},
		"created by a developer":               {user: developer, op: admissionv1.Create, wantTrack: v1alpha1.TrackStable},
		"a stored canary updated by developer": {user: developer, op: admissionv1.Update, old: true, wantTrack: v1alpha1.TrackCanary},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, shopNamespace())
			f.user = tc.user
			var old = stored
			if !tc.old {
				old = nil
			}
			resp := f.admit(t, PathMutateDeployment, tc.op, sluiceCanary(), old, false)
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			var ops []PatchOp
			if err := json.Unmarshal(resp.Patch, &ops); err != nil {
				t.Fatal(err)
			}
			got := applyPatch(t, sluiceCanary(), ops)
			if got.Labels[v1alpha1.LabelTrack] != tc.wantTrack || got.Spec.Template.Labels[v1alpha1.LabelTrack] != tc.wantTrack {
				t.Errorf("track %q / template %q, want %q", got.Labels[v1alpha1.LabelTrack], got.Spec.Template.Labels[v1alpha1.LabelTrack], tc.wantTrack)
			}
		})
	}
}

// TestBypassIsAuditedWithWho: an admitted bypass carries an audit
// annotation and an Event naming the user, and a reason of multi-byte
// runes is cut on a rune boundary.
func TestBypassIsAuditedWithWho(t *testing.T) {
	f := newFixture(t, shopNamespace())
	f.policy(t, "strict", v1alpha1.ModeEnforce, bypassable(func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
	}))
	f.user = sre
	reason := "INC-7 " + strings.Repeat("é", 2000)
	resp := f.admit(t, PathValidateDeployment, admissionv1.Create, testDeployment(withBypass(reason, fixtureNow.Add(time.Hour))), nil, false)
	if !resp.Allowed {
		t.Fatalf("denied: %+v", resp.Result)
	}
	audit := resp.AuditAnnotations[auditEmergencyBypass]
	for _, want := range []string{`by user "alice@example.com"`, "until 2026-11-25T13:00:00Z", "policy strict", "INC-7 éé"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit annotation %q lacks %q", audit, want)
		}
	}
	if !utf8.ValidString(audit) || len(audit) > maxAuditAnnotation {
		t.Errorf("audit annotation is %d bytes, valid UTF-8 %v", len(audit), utf8.ValidString(audit))
	}
	for _, w := range resp.Warnings {
		if !utf8.ValidString(w) || len(w) > 2*policies.MaxBypassReason+200 {
			t.Errorf("warning of %d bytes, valid UTF-8 %v: %q", len(w), utf8.ValidString(w), w)
		}
	}
	evs := f.events()
	if len(evs) != 1 || !strings.Contains(evs[0], "EmergencyBypass") || !strings.Contains(evs[0], `user "alice@example.com"`) || !utf8.ValidString(evs[0]) {
		t.Errorf("events %q, want one EmergencyBypass naming the user", evs)
	}
	if got := testutil.ToFloat64(f.h.metrics.bypasses.WithLabelValues("strict", "shop")); got != 1 {
		t.Errorf("bypass metric = %v, want 1", got)
	}

	// A dry run answers the same but records nothing.
	resp = f.admit(t, PathValidateDeployment, admissionv1.Create, testDeployment(withBypass("INC-7", fixtureNow.Add(time.Hour))), nil, true)
	if !resp.Allowed || resp.AuditAnnotations[auditEmergencyBypass] == "" || len(f.events()) != 0 {
		t.Errorf("dry run: allowed %v, audit %q", resp.Allowed, resp.AuditAnnotations)
	}
}

func TestNoteCutsOnRuneBoundaries(t *testing.T) {
	n := note(strings.Repeat("ü", 600), nil)
	if len(n) > maxEventNote || !utf8.ValidString(n) || !strings.HasSuffix(n, "...") {
		t.Errorf("note of %d bytes, valid UTF-8 %v", len(n), utf8.ValidString(n))
	}
}

// TestReviewDecodesUserInfo: the one-pass decoder reads who asks.
func TestReviewDecodesUserInfo(t *testing.T) {
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"DELETE",` +
		`"userInfo":{"username":"alice","uid":"1","groups":["sre","system:authenticated"],"extra":{"k":["v"]}}}}`
	r, err := decodeReview([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if u := r.Request.UserInfo; u.Username != "alice" || strings.Join(u.Groups, ",") != "sre,system:authenticated" {
		t.Errorf("userInfo %+v", u)
	}
}
