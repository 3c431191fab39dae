package webhook

import (
	"encoding/json"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// testDeployment is a valid Deployment web in namespace shop, as
// kube-apiserver sends it before Sluice touched it, changed by mods.
func testDeployment(mods ...func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "d-uid"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: "registry.example.com/web:1.0",
				}}},
			},
		},
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

func withImage(image string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image }
}

func withAnnotations(kv ...string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			d.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func withLabels(kv ...string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		if d.Labels == nil {
			d.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			d.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withTemplateLabels(kv ...string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		for i := 0; i+1 < len(kv); i += 2 {
			d.Spec.Template.Labels[kv[i]] = kv[i+1]
		}
	}
}

func canaryOf(rollout string, uid string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Name = rollout + "-canary"
		d.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "sluice.dev/v1alpha1", Kind: "Rollout", Name: rollout,
			UID: types.UID(uid), Controller: ptr.To(true),
		}}
	}
}

// named renames the Deployment.
func named(name string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Name = name }
}

// withBypass asks for an emergency bypass with reason until expires.
func withBypass(reason string, expires time.Time) func(*appsv1.Deployment) {
	return withAnnotations(v1alpha1.AnnotationEmergencyBypass, reason,
		v1alpha1.AnnotationEmergencyBypassExpires, expires.UTC().Format(time.RFC3339))
}

// bypassable lets members of group sre bypass a policy.
func bypassable(rules func(*v1alpha1.DeploymentPolicySpec)) func(*v1alpha1.DeploymentPolicySpec) {
	return func(s *v1alpha1.DeploymentPolicySpec) {
		rules(s)
		s.EmergencyBypass = &v1alpha1.EmergencyBypass{Groups: []string{"sre"}}
	}
}

// sluiceCanary is the canary the rollout controller writes for Rollout web
// (UID r-uid): a template that breaks the test policies, so that only an
// exemption admits it.
func sluiceCanary(mods ...func(*appsv1.Deployment)) *appsv1.Deployment {
	base := []func(*appsv1.Deployment){canaryOf("web", "r-uid"), withAnnotations(v1alpha1.AnnotationService, "web"),
		withImage("registry.example.com/web:latest")}
	return testDeployment(append(base, mods...)...)
}

// canaryRollout is Rollout web delivering revision rev.
func canaryRollout(rev string) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "r-uid"},
		Status:     v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, CanaryRevision: rev},
	}
}

func optedIn(d *appsv1.Deployment) { withAnnotations(v1alpha1.AnnotationRollout, "canary")(d) }

// applyPatch applies ops to d's JSON encoding and decodes the result.
func applyPatch(t testing.TB, d *appsv1.Deployment, ops []PatchOp) *appsv1.Deployment {
	t.Helper()
	raw := mustJSON(t, d)
	if len(ops) == 0 {
		return d.DeepCopy()
	}
	encoded, err := MarshalPatch(ops)
	if err != nil {
		t.Fatalf("encode patch: %v", err)
	}
	patch, err := jsonpatch.DecodePatch(encoded)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("apply patch %v: %v", ops, err)
	}
	res := &appsv1.Deployment{}
	if err := json.Unmarshal(out, res); err != nil {
		t.Fatalf("decode patched Deployment: %v", err)
	}
	return res
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

func mustRevision(t testing.TB, d *appsv1.Deployment, extra map[string]string) string {
	t.Helper()
	tmpl := d.Spec.Template
	tmpl.Labels = mergeLabels(tmpl.Labels, extra)
	rev, err := Revision(&tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}
