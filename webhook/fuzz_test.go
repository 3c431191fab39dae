package webhook

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// FuzzAdmissionReview sends arbitrary bodies to every handler through the
// HTTP layer kube-apiserver talks to. Whatever the body, the answer is an
// AdmissionReview; a refusal carries a code and a message; nothing panics
// (the fixture disables panic recovery).
func FuzzAdmissionReview(f *testing.F) {
	d := testDeployment(optedIn)
	seed := func(op admissionv1.Operation, kind metav1.GroupVersionKind, obj, old []byte) []byte {
		b, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u", Kind: kind, Namespace: "shop", Operation: op,
				Object: runtime.RawExtension{Raw: obj}, OldObject: runtime.RawExtension{Raw: old}},
		})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	dep := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	pol := metav1.GroupVersionKind{Group: "sluice.dev", Version: "v1alpha1", Kind: "DeploymentPolicy"}
	raw, err := json.Marshal(d)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed(admissionv1.Create, dep, raw, nil))
	f.Add(seed(admissionv1.Update, dep, raw, raw))
	f.Add(seed(admissionv1.Update, dep, raw, []byte(`{"spec":{"template":null}}`)))
	f.Add(seed(admissionv1.Create, pol, []byte(`{"metadata":{"name":"p"},"spec":{"rules":{"cel":[{"name":"x","expression":"1 +","message":"m"}]}}}`), nil))
	f.Add(seed(admissionv1.Create, dep, []byte(`{"metadata":{"annotations":{"sluice.dev/steps":"1,,5","sluice.dev/rollout":"ab"}}}`), nil))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE"}}`))
	// Who asks: Sluice writing a canary, a bypass by a group member, odd userInfo.
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE",` +
		`"kind":{"group":"apps","version":"v1","kind":"Deployment"},"namespace":"shop",` +
		`"userInfo":{"username":"system:serviceaccount:sluice-system:sluice","groups":["sre"]},` +
		`"object":{"metadata":{"name":"web-canary","namespace":"shop","ownerReferences":[{"apiVersion":"sluice.dev/v1alpha1",` +
		`"kind":"Rollout","name":"web","uid":"x","controller":true}],"annotations":{"sluice.dev/emergency-bypass":"INC",` +
		`"sluice.dev/emergency-bypass-expires":"2026-11-25T13:00:00Z"}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","userInfo":{"username":7,"groups":"x"}}}`))
	f.Add([]byte(`{"request":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{0xff, 0x00})

	fx := newFixture(f, shopNamespace())
	fx.policy(f, "strict", v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
		s.EmergencyBypass = &v1alpha1.EmergencyBypass{Groups: []string{"sre"}}
		s.Rules.CEL = []v1alpha1.CELRule{{Name: "two", Expression: "object.spec.replicas >= 2", Message: "at least 2 replicas"}}
	})
	fx.policy(f, "inject", v1alpha1.ModeAudit, func(s *v1alpha1.DeploymentPolicySpec) {
		s.InjectLabels = map[string]string{"a/b~c": "1"}
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{PathMutateDeployment, PathValidateDeployment, PathValidateDeploymentPolicy} {
			_, resp := fx.serve(t, path, "application/json", body)
			if !resp.Allowed && (resp.Result == nil || resp.Result.Code < 400 || resp.Result.Message == "") {
				t.Fatalf("%s: refusal without a code and message: %+v", path, resp)
			}
			if len(resp.Patch) > 0 {
				var ops []PatchOp
				if err := json.Unmarshal(resp.Patch, &ops); err != nil {
					t.Fatalf("%s: patch is not JSON Patch: %v", path, err)
				}
			}
		}
		for range fx.events() {
		}
	})
}

// FuzzMutate checks the patch builder on arbitrary labels, annotations and
// injected labels: the patch always applies to the object, and the patched
// object needs no further patch.
func FuzzMutate(f *testing.F) {
	f.Add("app", "web", "sluice.dev/team", "x", "a/b~c", "v", "payments", "canary", true, false)
	f.Add("~1", "", "/", "", "", "", "", "off", false, true)
	f.Add("sluice.dev/revision", "0", "sluice.dev/track", "canary", "sluice.dev/service", "s", "t", "beta", true, true)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, ik, iv, team, mode string, update, nilLabels bool) {
		for _, s := range []string{k1, v1, k2, v2, ik, iv, team, mode} {
			if !utf8.ValidString(s) {
				// Admission requests are JSON, which cannot carry invalid UTF-8.
				t.Skip()
			}
		}
		old := testDeployment(withAnnotations(v1alpha1.AnnotationRollout, mode))
		d := testDeployment(withAnnotations(v1alpha1.AnnotationRollout, mode), withTemplateLabels(k2, v2))
		if !nilLabels {
			withLabels(k1, v1)(d)
		}
		in := MutationInput{Operation: admissionv1.Create, Deployment: d, Team: team, InjectLabels: map[string]string{ik: iv}}
		if update {
			in.Operation = admissionv1.Update
			in.OldDeployment = old
		}
		m, err := Mutate(in)
		if err != nil {
			t.Fatalf("Mutate: %v", err)
		}
		patched := applyPatch(t, d, m.Ops)
		checkAdmitted(t, patched, m, team)
		in.Deployment = patched
		m2, err := Mutate(in)
		if err != nil {
			t.Fatalf("Mutate again: %v", err)
		}
		if len(m2.Ops) != 0 {
			t.Fatalf("second admission patches again: %v", m2.Ops)
		}
	})
}

// checkAdmitted checks Sluice's labels on a patched Deployment.
func checkAdmitted(t *testing.T, d *appsv1.Deployment, m Mutation, team string) {
	t.Helper()
	for where, labels := range map[string]map[string]string{"metadata": d.Labels, "template": d.Spec.Template.Labels} {
		if labels[v1alpha1.LabelRevision] != m.Revision || labels[v1alpha1.LabelTrack] != m.Track {
			t.Fatalf("%s labels %v lack revision %s / track %s", where, labels, m.Revision, m.Track)
		}
		if got, ok := labels[v1alpha1.LabelTeam]; got != team || (team == "" && ok) {
			t.Fatalf("%s team label %q (present %v), want %q", where, got, ok, team)
		}
	}
	if m.Paused && (!d.Spec.Paused || d.Annotations[v1alpha1.AnnotationPendingRevision] != m.Revision) {
		t.Fatalf("paused mutation left paused=%v pending=%q", d.Spec.Paused, d.Annotations[v1alpha1.AnnotationPendingRevision])
	}
}
