package webhook

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestMutate(t *testing.T) {
	base := testDeployment()
	rev := mustRevision(t, base, nil)
	newRev := mustRevision(t, testDeployment(withImage("registry.example.com/web:2.0")), nil)
	injRev := mustRevision(t, base, map[string]string{"cost-center": "42"})
	admitted := func(d *appsv1.Deployment) {
		withLabels(v1alpha1.LabelTeam, "payments", v1alpha1.LabelService, "web",
			v1alpha1.LabelTrack, "stable", v1alpha1.LabelRevision, rev)(d)
		withTemplateLabels(v1alpha1.LabelTeam, "payments", v1alpha1.LabelService, "web",
			v1alpha1.LabelTrack, "stable", v1alpha1.LabelRevision, rev)(d)
	}
	// A stored opted-in Deployment at revision rev, as admitted.
	storedOptedIn := testDeployment(optedIn, admitted)

	tests := map[string]struct {
		in         MutationInput
		want       []PatchOp
		wantPaused bool
		wantTrack  string
	}{
		"create without metadata labels adds the whole map and each template label": {
			in: MutationInput{Operation: admissionv1.Create, Deployment: testDeployment(), Team: "payments"},
			want: []PatchOp{
				{Op: "add", Path: "/metadata/labels", Value: map[string]string{
					"sluice.dev/team": "payments", "sluice.dev/service": "web", "sluice.dev/track": "stable", "sluice.dev/revision": rev}},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: rev},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1service", Value: "web"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1team", Value: "payments"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1track", Value: "stable"},
			},
			wantTrack: "stable",
		},
		"namespace without team: no team label, a hand-written one is removed": {
			in: MutationInput{Operation: admissionv1.Create, Team: "",
				Deployment: testDeployment(withLabels("sluice.dev/team", "forged", "tier/x~y", "1"), withAnnotations(v1alpha1.AnnotationService, "checkout"))},
			want: []PatchOp{
				{Op: "add", Path: "/metadata/labels/sluice.dev~1revision", Value: rev},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1service", Value: "checkout"},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1track", Value: "stable"},
				{Op: "remove", Path: "/metadata/labels/sluice.dev~1team"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: rev},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1service", Value: "checkout"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1track", Value: "stable"},
			},
			wantTrack: "stable",
		},
		"already admitted: no patch": {
			in:        MutationInput{Operation: admissionv1.Update, Deployment: testDeployment(admitted), OldDeployment: testDeployment(admitted), Team: "payments"},
			wantTrack: "stable",
		},
		"stale labels are replaced": {
			in: MutationInput{Operation: admissionv1.Update, Team: "payments", OldDeployment: testDeployment(admitted),
				Deployment: testDeployment(admitted, withLabels(v1alpha1.LabelTrack, "canary"), withTemplateLabels(v1alpha1.LabelRevision, "0000000000"))},
			want: []PatchOp{
				{Op: "replace", Path: "/metadata/labels/sluice.dev~1track", Value: "stable"},
				{Op: "replace", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: rev},
			},
			wantTrack: "stable",
		},
		"policy labels are injected and count in the revision; sluice.dev keys from policies are ignored": {
			in: MutationInput{Operation: admissionv1.Create, Team: "payments", Deployment: testDeployment(withLabels("app", "web")),
				InjectLabels: map[string]string{"cost-center": "42", "sluice.dev/track": "canary"}},
			want: []PatchOp{
				{Op: "add", Path: "/metadata/labels/cost-center", Value: "42"},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1revision", Value: injRev},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1service", Value: "web"},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1team", Value: "payments"},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1track", Value: "stable"},
				{Op: "add", Path: "/spec/template/metadata/labels/cost-center", Value: "42"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: injRev},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1service", Value: "web"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1team", Value: "payments"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1track", Value: "stable"},
			},
			wantTrack: "stable",
		},
		"opted-in update with a new template is paused with its pending revision": {
			in: MutationInput{Operation: admissionv1.Update, Team: "payments", OldDeployment: storedOptedIn,
				Deployment: testDeployment(optedIn, admitted, withImage("registry.example.com/web:2.0"))},
			want: []PatchOp{
				{Op: "replace", Path: "/metadata/labels/sluice.dev~1revision", Value: newRev},
				{Op: "add", Path: "/metadata/annotations/sluice.dev~1pending-revision", Value: newRev},
				{Op: "add", Path: "/spec/paused", Value: true},
				{Op: "replace", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: newRev},
			},
			wantPaused: true,
			wantTrack:  "stable",
		},
		"opted-in update without a template change keeps spec.paused as sent": {
			in: MutationInput{Operation: admissionv1.Update, Team: "payments", OldDeployment: storedOptedIn,
				Deployment: testDeployment(optedIn, admitted, withAnnotations(v1alpha1.AnnotationPendingRevision, rev))},
			wantTrack: "stable",
		},
		"opted-in update from an object without a revision label compares computed revisions": {
			in: MutationInput{Operation: admissionv1.Update, Team: "payments", OldDeployment: testDeployment(optedIn),
				Deployment: testDeployment(optedIn, admitted)},
			wantTrack: "stable",
		},
		"not opted in: a new template is not paused": {
			in: MutationInput{Operation: admissionv1.Update, Team: "payments", OldDeployment: testDeployment(admitted, withAnnotations(v1alpha1.AnnotationRollout, "off")),
				Deployment: testDeployment(admitted, withAnnotations(v1alpha1.AnnotationRollout, "off"), withImage("registry.example.com/web:2.0"))},
			want: []PatchOp{
				{Op: "replace", Path: "/metadata/labels/sluice.dev~1revision", Value: newRev},
				{Op: "replace", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: newRev},
			},
			wantTrack: "stable",
		},
		"an owner reference alone makes no canary: stable, its own service, paused": {
			in: MutationInput{Operation: admissionv1.Update, Team: "payments",
				OldDeployment: testDeployment(optedIn, canaryOf("web", "r-uid"), admitted),
				Deployment:    testDeployment(optedIn, canaryOf("web", "r-uid"), admitted, withImage("registry.example.com/web:2.0"))},
			want: []PatchOp{
				{Op: "replace", Path: "/metadata/labels/sluice.dev~1revision", Value: newRev},
				{Op: "replace", Path: "/metadata/labels/sluice.dev~1service", Value: "web-canary"},
				{Op: "add", Path: "/metadata/annotations/sluice.dev~1pending-revision", Value: newRev},
				{Op: "add", Path: "/spec/paused", Value: true},
				{Op: "replace", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: newRev},
				{Op: "replace", Path: "/spec/template/metadata/labels/sluice.dev~1service", Value: "web-canary"},
			},
			wantPaused: true,
			wantTrack:  "stable",
		},
		"create of an opted-in Deployment is not paused": {
			in:        MutationInput{Operation: admissionv1.Create, Team: "payments", Deployment: testDeployment(optedIn, admitted)},
			wantTrack: "stable",
		},
		"a canary: track canary, never paused": {
			in: MutationInput{Operation: admissionv1.Update, Team: "payments", Canary: true,
				OldDeployment: testDeployment(optedIn, canaryOf("web", "r-uid"), withAnnotations(v1alpha1.AnnotationService, "web")),
				Deployment:    testDeployment(optedIn, canaryOf("web", "r-uid"), withAnnotations(v1alpha1.AnnotationService, "web"), withImage("registry.example.com/web:2.0"))},
			want: []PatchOp{
				{Op: "add", Path: "/metadata/labels", Value: map[string]string{
					"sluice.dev/team": "payments", "sluice.dev/service": "web", "sluice.dev/track": "canary", "sluice.dev/revision": newRev}},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: newRev},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1service", Value: "web"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1team", Value: "payments"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1track", Value: "canary"},
			},
			wantTrack: "canary",
		},
		"a name that is no label value gets no service label": {
			in: MutationInput{Operation: admissionv1.Create, Team: "payments", Deployment: testDeployment(func(d *appsv1.Deployment) {
				d.Name = "a-very-long-deployment-name-that-is-longer-than-sixty-three-characters-x"
			}, withLabels("app", "web"))},
			want: []PatchOp{
				{Op: "add", Path: "/metadata/labels/sluice.dev~1revision", Value: rev},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1team", Value: "payments"},
				{Op: "add", Path: "/metadata/labels/sluice.dev~1track", Value: "stable"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1revision", Value: rev},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1team", Value: "payments"},
				{Op: "add", Path: "/spec/template/metadata/labels/sluice.dev~1track", Value: "stable"},
			},
			wantTrack: "stable",
		},
		"DELETE is not mutated": {
			in: MutationInput{Operation: admissionv1.Delete, Deployment: testDeployment()},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := Mutate(tc.in)
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			if diff := cmp.Diff(tc.want, m.Ops); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			if m.Paused != tc.wantPaused {
				t.Errorf("Paused = %v, want %v", m.Paused, tc.wantPaused)
			}
			if m.Track != tc.wantTrack {
				t.Errorf("Track = %q, want %q", m.Track, tc.wantTrack)
			}
			// Idempotent: the patched object, admitted again, needs nothing.
			patched := applyPatch(t, tc.in.Deployment, m.Ops)
			again := tc.in
			again.Deployment = patched
			m2, err := Mutate(again)
			if err != nil {
				t.Fatalf("Mutate again: %v", err)
			}
			if len(m2.Ops) != 0 {
				t.Errorf("re-admitting the patched object patches again: %v", m2.Ops)
			}
		})
	}
}

func TestMutateErrors(t *testing.T) {
	tests := map[string]MutationInput{
		"no Deployment":         {Operation: admissionv1.Create},
		"UPDATE without old":    {Operation: admissionv1.Update, Deployment: testDeployment()},
		"UPDATE of nil old obj": {Operation: admissionv1.Update, Deployment: testDeployment(), OldDeployment: nil},
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Mutate(in); err == nil {
				t.Fatal("Mutate succeeded, want an error")
			}
		})
	}
}

func TestRevision(t *testing.T) {
	a := testDeployment()
	revA, err := Revision(&a.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	// Pinned: a change of this value changes every Deployment's revision on
	// upgrade, which pauses every opted-in Deployment once. Change it only
	// on purpose.
	if want := "66f4569b85"; revA != want {
		t.Errorf("Revision = %s, want %s", revA, want)
	}
	if len(revA) != RevisionLength {
		t.Errorf("len = %d", len(revA))
	}
	withSluice := testDeployment(withTemplateLabels("sluice.dev/track", "canary", "sluice.dev/revision", "x"), func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations = map[string]string{"sluice.dev/anything": "y"}
	})
	if rev, _ := Revision(&withSluice.Spec.Template); rev != revA {
		t.Errorf("sluice.dev labels changed the revision: %s vs %s", rev, revA)
	}
	other := testDeployment(withTemplateLabels("version", "2"))
	if rev, _ := Revision(&other.Spec.Template); rev == revA {
		t.Errorf("a different template has the same revision %s", rev)
	}
	if _, err := Revision(nil); err == nil {
		t.Error("Revision(nil) succeeded")
	}
}

func TestEscapePointer(t *testing.T) {
	tests := map[string]string{
		"app":             "app",
		"sluice.dev/team": "sluice.dev~1team",
		"a~b":             "a~0b",
		"~/":              "~0~1",
		"a/b/~1":          "a~1b~1~01",
	}
	for in, want := range tests {
		if got := EscapePointer(in); got != want {
			t.Errorf("EscapePointer(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMarshalPatchMatchesEncodingJSON checks the hand-written patch encoder
// against encoding/json on values that need escaping.
func TestMarshalPatchMatchesEncodingJSON(t *testing.T) {
	tricky := []string{"", "plain", `quote" back\slash`, "<html>&amp;", "tab\tnew\nline", "ünïcödé ✓", "\u2028\u2029", "\x00\x1f", "a/b~c"}
	var ops []PatchOp
	for _, s := range tricky {
		ops = append(ops,
			PatchOp{Op: "add", Path: pathLabels + "/" + EscapePointer(s), Value: s},
			PatchOp{Op: "replace", Path: pathAnnotations + "/" + EscapePointer(s), Value: map[string]string{s: s, "k": s}},
			PatchOp{Op: "remove", Path: pathTemplateLabels + "/" + EscapePointer(s)})
	}
	ops = append(ops, PatchOp{Op: "add", Path: pathPaused, Value: true}, PatchOp{Op: "add", Path: "/spec/replicas", Value: 3})
	got, err := MarshalPatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	var fromHand, fromStd []map[string]any
	if err := json.Unmarshal(got, &fromHand); err != nil {
		t.Fatalf("hand-encoded patch is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(mustJSON(t, ops), &fromStd); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromHand, fromStd) {
		t.Fatalf("patches differ:\nhand %v\nstd  %v", fromHand, fromStd)
	}
}

// TestMutateManyLabelsReplacesMapsWhole checks the large-patch form: past
// maxKeyOps key changes a label map is replaced with one op, which still
// keeps every label the object had and converges in one admission.
func TestMutateManyLabelsReplacesMapsWhole(t *testing.T) {
	inject := map[string]string{}
	for i := range maxKeyOps + 3 {
		inject[fmt.Sprintf("policy-%02d", i)] = "true"
	}
	d := testDeployment(optedIn, withLabels("owner", "payments", v1alpha1.LabelTeam, "stale"), withTemplateLabels("app", "web"))
	m, err := Mutate(MutationInput{Operation: admissionv1.Create, Deployment: d, Team: "", InjectLabels: inject})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, op := range m.Ops {
		paths = append(paths, op.Op+" "+op.Path)
	}
	if diff := cmp.Diff([]string{"replace " + pathLabels, "replace " + pathTemplateLabels}, paths); diff != "" {
		t.Fatalf("ops (-want +got):\n%s", diff)
	}
	patched := applyPatch(t, d, m.Ops)
	checkAdmitted(t, patched, m, "")
	for k, v := range inject {
		if patched.Labels[k] != v || patched.Spec.Template.Labels[k] != v {
			t.Errorf("label %s not injected everywhere: %v / %v", k, patched.Labels, patched.Spec.Template.Labels)
		}
	}
	if patched.Labels["owner"] != "payments" || patched.Spec.Template.Labels["app"] != "web" {
		t.Errorf("existing labels lost: %v / %v", patched.Labels, patched.Spec.Template.Labels)
	}
	again, err := Mutate(MutationInput{Operation: admissionv1.Create, Deployment: patched, InjectLabels: inject})
	if err != nil || len(again.Ops) != 0 {
		t.Fatalf("second admission: %v %v", again.Ops, err)
	}
}
