package v1alpha1

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CanarySuffix ends the name of a Rollout's canary Deployment:
// <deployment>-canary.
const CanarySuffix = "-canary"

// CanaryName is the name of the canary Deployment of the Deployment (and
// Rollout) named deployment.
func CanaryName(deployment string) string { return deployment + CanarySuffix }

// CanaryOwner is what a Deployment claims about being a canary: the name of
// the sluice.dev Rollout that its controller owner reference names, when the
// Deployment is named after it (<rollout>-canary). Anyone who may write
// Deployments can write such a reference and name, so the claim makes a
// canary only together with who writes it (the webhooks) or with the
// Rollout's own ownership (the rollout controller).
func CanaryOwner(d metav1.Object) (rollout string, ok bool) {
	ref := metav1.GetControllerOfNoCopy(d)
	if ref == nil || ref.Kind != "Rollout" {
		return "", false
	}
	group, _, ok := strings.Cut(ref.APIVersion, "/")
	if !ok || group != GroupName || d.GetName() != CanaryName(ref.Name) {
		return "", false
	}
	return ref.Name, true
}
