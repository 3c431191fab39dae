package webhook

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// JSON Pointers of the members the mutating webhook writes.
const (
	pathLabels         = "/metadata/labels"
	pathAnnotations    = "/metadata/annotations"
	pathPaused         = "/spec/paused"
	pathTemplateLabels = "/spec/template/metadata/labels"
)

// MutationInput is what Mutate needs to know about one admission request.
type MutationInput struct {
	// Operation is admissionv1.Create or admissionv1.Update; others yield
	// no mutation.
	Operation admissionv1.Operation
	// Deployment is the object under admission. Required.
	Deployment *appsv1.Deployment
	// OldDeployment is the stored object on UPDATE. Required on UPDATE.
	OldDeployment *appsv1.Deployment
	// Team is the namespace's sluice.dev/team label; empty when the
	// namespace has none, which removes the label from the Deployment.
	Team string
	// InjectLabels are the labels selected policies inject; sluice.dev/
	// keys among them are ignored (Sluice owns those).
	InjectLabels map[string]string
	// Canary says the Deployment is a Rollout's canary: labelled
	// sluice.dev/track: canary and never paused. The caller decides it from
	// who makes the request, never from the object's owner references
	// alone.
	Canary bool
}

// Mutation is the outcome of Mutate.
type Mutation struct {
	// Ops is the JSON patch, empty when the object already has everything.
	Ops []PatchOp
	// Revision is the pod template's revision.
	Revision string
	// Track is v1alpha1.TrackStable or v1alpha1.TrackCanary.
	Track string
	// Service is the logical service, empty when neither the annotation nor
	// the name is a valid label value (the validating webhook denies that).
	Service string
	// Paused reports that this request brings a new revision to an opted-in
	// Deployment, which is held paused for a canary.
	Paused bool
}

// Mutate computes the JSON patch the mutating webhook returns for a
// Deployment: Sluice's labels and the policies' labels on the Deployment and
// its pod template and, on an UPDATE of an opted-in stable Deployment whose
// revision changes, spec.paused with the pending revision annotation. It is
// pure and idempotent: applying its patch and calling it again with the
// result yields no operations.
func Mutate(in MutationInput) (Mutation, error) {
	d := in.Deployment
	if d == nil {
		return Mutation{}, fmt.Errorf("the Deployment under admission is missing")
	}
	if in.Operation != admissionv1.Create && in.Operation != admissionv1.Update {
		return Mutation{}, nil
	}
	if in.Operation == admissionv1.Update && in.OldDeployment == nil {
		return Mutation{}, fmt.Errorf("UPDATE of %s/%s carries no old object", d.Namespace, d.Name)
	}

	set := make(map[string]string, len(in.InjectLabels)+4)
	for k, v := range in.InjectLabels {
		if !strings.HasPrefix(k, sluicePrefix) {
			set[k] = v
		}
	}
	// The revision is taken over the template as it will be stored, i.e.
	// with the policies' labels, so re-admitting gives the same revision.
	tmpl := d.Spec.Template
	tmpl.Labels = mergeLabels(withoutSluiceKeys(d.Spec.Template.Labels), set)
	rev, err := Revision(&tmpl)
	if err != nil {
		return Mutation{}, fmt.Errorf("revision of %s/%s: %w", d.Namespace, d.Name, err)
	}

	canary := in.Canary
	m := Mutation{Revision: rev, Track: v1alpha1.TrackStable, Service: ServiceName(d)}
	if canary {
		m.Track = v1alpha1.TrackCanary
	}
	set[v1alpha1.LabelTrack] = m.Track
	set[v1alpha1.LabelRevision] = rev
	if m.Service != "" {
		set[v1alpha1.LabelService] = m.Service
	}
	var remove []string
	if in.Team != "" {
		set[v1alpha1.LabelTeam] = in.Team
	} else {
		remove = append(remove, v1alpha1.LabelTeam)
	}

	keys := sortedKeys(set)
	ops := appendMapPatch(make([]PatchOp, 0, 2*len(keys)+3), pathLabels, d.Labels, set, keys, remove)
	if in.Operation == admissionv1.Update && !canary && OptedIn(d) {
		oldRev := in.OldDeployment.Spec.Template.Labels[v1alpha1.LabelRevision]
		if oldRev == "" {
			if oldRev, err = Revision(&in.OldDeployment.Spec.Template); err != nil {
				return Mutation{}, fmt.Errorf("revision of the stored %s/%s: %w", d.Namespace, d.Name, err)
			}
		}
		if oldRev != rev {
			m.Paused = true
			ops = append(ops, mapPatch(pathAnnotations, d.Annotations, map[string]string{v1alpha1.AnnotationPendingRevision: rev}, nil)...)
			if !d.Spec.Paused {
				ops = append(ops, PatchOp{Op: "add", Path: pathPaused, Value: true})
			}
		}
	}
	if m.Ops = appendMapPatch(ops, pathTemplateLabels, d.Spec.Template.Labels, set, keys, remove); len(m.Ops) == 0 {
		m.Ops = nil // nothing to patch, as callers and tests compare
	}
	return m, nil
}

// mergeLabels returns base with over laid on top, without modifying either.
func mergeLabels(base, over map[string]string) map[string]string {
	if len(over) == 0 {
		return base
	}
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// ServiceName is the logical service of d: its sluice.dev/service annotation,
// else its own name (a canary, which Sluice creates with the annotation,
// serves its stable Deployment's service; an owner reference names no
// service). It is empty when that is not a valid label value.
func ServiceName(d *appsv1.Deployment) string {
	s := d.Annotations[v1alpha1.AnnotationService]
	if s == "" {
		s = d.Name
	}
	if router.CheckServiceName(s) != nil {
		return ""
	}
	return s
}

// OptedIn reports whether d asks for progressive delivery: its
// sluice.dev/rollout annotation is canary, beta or ab.
func OptedIn(d *appsv1.Deployment) bool {
	switch v1alpha1.DeliveryMode(d.Annotations[v1alpha1.AnnotationRollout]) {
	case v1alpha1.ModeCanary, v1alpha1.ModeBeta, v1alpha1.ModeAB:
		return true
	}
	return false
}
