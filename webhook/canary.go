package webhook

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Who may make a canary. Everything an object says about itself (its name,
// its owner references, its labels) can be written by anyone allowed to
// create Deployments in its namespace, and a Rollout's UID can be read by
// anyone allowed to get Rollouts. So a Deployment is treated as a canary
// only on the word of the request's authenticated user:
//
//   - the mutating webhook labels it sluice.dev/track: canary (and does not
//     pause it) when Sluice's own identity writes it, or when someone else
//     updates a Deployment that is already stored as a canary (an edit never
//     turns a canary into a stable Deployment under the traffic side's feet,
//     nor a stable one into a canary);
//   - the validating webhook skips policies only when Sluice's own identity
//     writes it and its pod template is the revision its Rollout is
//     delivering (status.canaryRevision): the stable Deployment with that
//     template passed the policies. Anyone else's write of a canary is
//     judged like any Deployment.

// bySluice reports whether req was made by Sluice's own identity.
func (h *handlers) bySluice(req *deploymentRequest) bool {
	return h.self != "" && req.UserInfo.Username == h.self
}

// canaryTrack reports whether the Deployment under admission is to carry
// sluice.dev/track: canary.
func (h *handlers) canaryTrack(req *deploymentRequest) bool {
	owner, ok := v1alpha1.CanaryOwner(req.Object)
	if !ok {
		return false
	}
	if h.bySluice(req) {
		return true
	}
	if req.Old == nil {
		return false
	}
	oldOwner, ok := v1alpha1.CanaryOwner(req.Old)
	return ok && oldOwner == owner && req.Old.Labels[v1alpha1.LabelTrack] == v1alpha1.TrackCanary
}

// exemptCanary reports whether the Deployment under admission is Sluice's
// canary as Sluice writes it, which policies do not judge again: written by
// Sluice's own identity, named <rollout>-canary, controlled by that Rollout
// with the UID the cache holds, with the pod template of the Rollout's
// status.canaryRevision. Sluice writes the Rollout's status before the
// canary; another replica's cache may lag behind that write by a moment, so
// a mismatch is looked at again for up to namespaceWait. The reason says
// why it is exempt, for the answer.
func (h *handlers) exemptCanary(ctx context.Context, req *deploymentRequest) (bool, string, error) {
	d := req.Object
	owner, ok := v1alpha1.CanaryOwner(d)
	if !ok || !h.bySluice(req) {
		return false, "", nil
	}
	ref := metav1.GetControllerOfNoCopy(d)
	rev, err := Revision(&d.Spec.Template)
	if err != nil {
		return false, "", fmt.Errorf("revision of %s/%s: %w", d.Namespace, d.Name, err)
	}
	deadline := time.Now().Add(h.namespaceWait)
	for {
		ro := &v1alpha1.Rollout{}
		err := h.reader.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: owner}, ro)
		switch {
		case err != nil && !apierrors.IsNotFound(err):
			return false, "", fmt.Errorf("read Rollout %s/%s from the cache: %w", d.Namespace, owner, err)
		case err == nil && ro.UID == ref.UID && ro.Status.CanaryRevision == rev:
			return true, fmt.Sprintf("canary %s of Rollout %s: the Deployment was admitted with the same pod template", rev, owner), nil
		}
		if !time.Now().Before(deadline) {
			return false, "", nil
		}
		select {
		case <-ctx.Done():
			return false, "", nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}
