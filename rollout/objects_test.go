package rollout

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func teamDeployment() *appsv1.Deployment {
	labels := map[string]string{"app": "checkout", v1alpha1.LabelTrack: v1alpha1.TrackStable, v1alpha1.LabelRevision: "r2"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout", UID: "d-uid", Generation: 3,
			Labels:      map[string]string{"app": "checkout", v1alpha1.LabelTrack: v1alpha1.TrackStable},
			Annotations: map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationPendingRevision: "r2"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](4),
			Paused:   true,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "checkout:v2"}}}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 4, UpdatedReplicas: 4, AvailableReplicas: 4},
	}
}

func TestCanaryDeployment(t *testing.T) {
	d := teamDeployment()
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout", UID: "ro-uid"}}
	c := CanaryDeployment(d, ro, "payments", 2)
	if c.Name != "checkout-canary" || c.Namespace != "shop" || *c.Spec.Replicas != 2 {
		t.Fatalf("canary %s/%s with %d replicas", c.Namespace, c.Name, *c.Spec.Replicas)
	}
	owner, ok := v1alpha1.CanaryOwner(c)
	if !ok || owner != "checkout" || c.OwnerReferences[0].UID != "ro-uid" {
		t.Fatalf("owner references %+v", c.OwnerReferences)
	}
	if diff := cmp.Diff(map[string]string{"app": "checkout", v1alpha1.LabelTrack: v1alpha1.TrackCanary}, c.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	wantTmpl := map[string]string{"app": "checkout", v1alpha1.LabelTrack: v1alpha1.TrackCanary,
		v1alpha1.LabelRevision: "r2", v1alpha1.LabelService: "payments"}
	if diff := cmp.Diff(wantTmpl, c.Spec.Template.Labels); diff != "" {
		t.Errorf("template labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{v1alpha1.AnnotationService: "payments"}, c.Annotations); diff != "" {
		t.Errorf("annotations (-want +got), a canary must not be opted in itself:\n%s", diff)
	}
	if c.Spec.Paused {
		t.Errorf("canary is paused")
	}
	if d.Spec.Template.Labels[v1alpha1.LabelTrack] != v1alpha1.TrackStable || d.Spec.Selector.MatchLabels[v1alpha1.LabelTrack] != "" {
		t.Errorf("CanaryDeployment modified the team's Deployment")
	}
	if _, ok := v1alpha1.CanaryOwner(d); ok {
		t.Errorf("the team's Deployment is taken for a canary")
	}
}

func TestViews(t *testing.T) {
	d := teamDeployment()
	want := DeploymentView{TemplateRevision: "r2", PendingRevision: "r2", Paused: true, Replicas: 4}
	if diff := cmp.Diff(want, ViewDeployment(d)); diff != "" {
		t.Errorf("paused view (-want +got):\n%s", diff)
	}
	d.Spec.Paused = false
	delete(d.Annotations, v1alpha1.AnnotationPendingRevision)
	if v := ViewDeployment(d); !v.RolledOut {
		t.Errorf("a fully updated and available Deployment is not rolled out: %+v", v)
	}
	d.Status.ObservedGeneration = 2
	if v := ViewDeployment(d); v.RolledOut {
		t.Errorf("a Deployment whose generation is not observed counts as rolled out")
	}
	d.Status.ObservedGeneration, d.Status.Replicas = 3, 5
	if v := ViewDeployment(d); v.RolledOut {
		t.Errorf("a Deployment with an old pod left counts as rolled out")
	}

	c := teamDeployment()
	c.Status.ReadyReplicas, c.Status.UpdatedReplicas = 4, 2
	if v := ViewCanary(c); v.ReadyReplicas != 2 || v.Revision != "r2" {
		t.Errorf("canary view %+v, want 2 ready of the current template", v)
	}
	c.Generation = 4
	if v := ViewCanary(c); v.ReadyReplicas != 0 {
		t.Errorf("a canary whose new template is not observed has %d ready", v.ReadyReplicas)
	}
}

func TestAnalysisConfig(t *testing.T) {
	d := v1alpha1.DefaultDelivery()
	d.Analysis.Queries = []v1alpha1.MetricQuery{
		{Name: "p95", Query: "q", Threshold: "0.3"},
		{Name: "throughput", Query: "q", Threshold: "10", Comparison: v1alpha1.ComparisonAbove},
	}
	cfg, err := AnalysisConfig(d)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxErrorRate != 0.01 || cfg.CriticalErrorRate != 0.2 || cfg.Confidence != 0.95 || cfg.MinSamples != 100 {
		t.Errorf("config %+v does not follow the delivery", cfg)
	}
	if len(cfg.Custom) != 2 || cfg.Custom[0].Max == nil || *cfg.Custom[0].Max != 0.3 || cfg.Custom[1].Min == nil || *cfg.Custom[1].Min != 10 {
		t.Errorf("custom checks %+v", cfg.Custom)
	}
	d.Analysis.Queries[0].Threshold = "lots"
	if _, err := AnalysisConfig(d); err == nil || !strings.Contains(err.Error(), "p95") {
		t.Errorf("bad threshold: error %v, want one naming the query", err)
	}
}
