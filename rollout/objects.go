package rollout

import (
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// ViewDeployment is what the state machine sees of the team's Deployment.
func ViewDeployment(d *appsv1.Deployment) DeploymentView {
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	return DeploymentView{
		TemplateRevision: d.Spec.Template.Labels[v1alpha1.LabelRevision],
		PendingRevision:  d.Annotations[v1alpha1.AnnotationPendingRevision],
		Paused:           d.Spec.Paused,
		Replicas:         replicas,
		RolledOut: !d.Spec.Paused && s.ObservedGeneration >= d.Generation &&
			s.UpdatedReplicas == replicas && s.AvailableReplicas == replicas && s.Replicas == replicas,
	}
}

// ViewCanary is what the state machine sees of the canary Deployment. Its
// ready replicas count only once the Deployment controller has observed the
// current template, so a template change is never mistaken for ready.
func ViewCanary(d *appsv1.Deployment) CanaryView {
	v := CanaryView{
		Revision: d.Spec.Template.Labels[v1alpha1.LabelRevision],
		Replicas: ptr.Deref(d.Spec.Replicas, 1),
	}
	if d.Status.ObservedGeneration >= d.Generation {
		v.ReadyReplicas = min(d.Status.UpdatedReplicas, d.Status.ReadyReplicas)
	}
	return v
}

// CanaryDeployment is the canary of d for the Rollout ro: named
// <name>-canary, controller-owned by ro, with d's current pod template and
// selector, both with sluice.dev/track: canary added, and replicas replicas.
// It carries the sluice.dev/service annotation, so it serves the same logical
// service, and none of the delivery annotations: a canary is never itself
// opted in.
func CanaryDeployment(d *appsv1.Deployment, ro *v1alpha1.Rollout, service string, replicas int32) *appsv1.Deployment {
	labels := maps.Clone(d.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[v1alpha1.LabelTrack] = v1alpha1.TrackCanary
	labels[v1alpha1.LabelService] = service
	sel := d.Spec.Selector.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[v1alpha1.LabelTrack] = v1alpha1.TrackCanary
	tmpl := *d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[v1alpha1.LabelTrack] = v1alpha1.TrackCanary
	tmpl.Labels[v1alpha1.LabelService] = service
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        v1alpha1.CanaryName(d.Name),
			Namespace:   d.Namespace,
			Labels:      labels,
			Annotations: map[string]string{v1alpha1.AnnotationService: service},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         v1alpha1.SchemeGroupVersion.String(),
				Kind:               "Rollout",
				Name:               ro.Name,
				UID:                ro.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:                ptr.To(replicas),
			Selector:                sel,
			Template:                tmpl,
			Strategy:                *d.Spec.Strategy.DeepCopy(),
			MinReadySeconds:         d.Spec.MinReadySeconds,
			ProgressDeadlineSeconds: d.Spec.ProgressDeadlineSeconds,
		},
	}
}

// NewRollout is the Rollout of d: same name and namespace, controller-owned
// by d, with the resolved delivery.
func NewRollout(d *appsv1.Deployment, delivery v1alpha1.Delivery) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Rollout"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      d.Name,
			Namespace: d.Namespace,
			Labels:    map[string]string{v1alpha1.LabelService: delivery.Service},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         "apps/v1",
				Kind:               "Deployment",
				Name:               d.Name,
				UID:                d.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: v1alpha1.RolloutSpec{Delivery: delivery},
	}
}
