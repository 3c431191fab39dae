package rollout

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// TestUnpauseRefusesAStaleDecision: the controller decides to resume a
// Deployment (its pending revision is the stable one) while a team applies
// a newer revision, which the webhook admits paused. Resuming on the stale
// view must fail with a conflict, not roll the newer revision out natively.
func TestUnpauseRefusesAStaleDecision(t *testing.T) {
	ctx := context.Background()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout",
		Annotations: map[string]string{v1alpha1.AnnotationPendingRevision: "v1"}}, Spec: appsv1.DeploymentSpec{Paused: true}}
	cl := fake.NewClientBuilder().WithScheme(s).WithObjects(d).Build()
	c := &Controller{client: cl}
	var seen appsv1.Deployment
	if err := cl.Get(ctx, client.ObjectKeyFromObject(d), &seen); err != nil {
		t.Fatal(err)
	}
	// The newer revision, admitted paused.
	newer := seen.DeepCopy()
	newer.Annotations[v1alpha1.AnnotationPendingRevision] = "v3"
	if err := cl.Update(ctx, newer); err != nil {
		t.Fatal(err)
	}
	err := c.do(ctx, Action{Kind: UnpauseDeployment}, seen.DeepCopy(), nil, nil, "checkout")
	if !apierrors.IsConflict(err) {
		t.Fatalf("resuming on a stale view: %v, want a conflict", err)
	}
	var now appsv1.Deployment
	if err := cl.Get(ctx, client.ObjectKeyFromObject(d), &now); err != nil {
		t.Fatal(err)
	}
	if !now.Spec.Paused || now.Annotations[v1alpha1.AnnotationPendingRevision] != "v3" {
		t.Fatalf("the newer revision was resumed: paused %v, pending %q", now.Spec.Paused, now.Annotations[v1alpha1.AnnotationPendingRevision])
	}
	// On the current view it resumes.
	if err := c.do(ctx, Action{Kind: UnpauseDeployment}, &now, nil, nil, "checkout"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(d), &now); err != nil {
		t.Fatal(err)
	}
	if now.Spec.Paused || now.Annotations[v1alpha1.AnnotationPendingRevision] != "" {
		t.Fatalf("not resumed: paused %v, pending %q", now.Spec.Paused, now.Annotations[v1alpha1.AnnotationPendingRevision])
	}
}
