package v1alpha1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestCanaryOwner(t *testing.T) {
	canary := func(name string, edit func(*metav1.OwnerReference)) *metav1.ObjectMeta {
		ref := metav1.OwnerReference{APIVersion: "sluice.dev/v1alpha1", Kind: "Rollout", Name: "web", UID: "u", Controller: ptr.To(true)}
		if edit != nil {
			edit(&ref)
		}
		return &metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{ref}}
	}
	tests := map[string]struct {
		d    *metav1.ObjectMeta
		want bool
	}{
		"plain":               {&metav1.ObjectMeta{Name: "web-canary"}, false},
		"rollout controller":  {canary("web-canary", nil), true},
		"named otherwise":     {canary("web", nil), false},
		"another's canary":    {canary("api-canary", nil), false},
		"other group Rollout": {canary("web-canary", func(r *metav1.OwnerReference) { r.APIVersion = "argoproj.io/v1alpha1" }), false},
		"not controller":      {canary("web-canary", func(r *metav1.OwnerReference) { r.Controller = nil }), false},
		"core group":          {canary("web-canary", func(r *metav1.OwnerReference) { r.APIVersion = "v1" }), false},
		"another kind":        {canary("web-canary", func(r *metav1.OwnerReference) { r.Kind = "DeploymentPolicy" }), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			owner, got := CanaryOwner(tc.d)
			if got != tc.want || got && owner != "web" {
				t.Errorf("CanaryOwner = %q, %v, want %v", owner, got, tc.want)
			}
		})
	}
}
