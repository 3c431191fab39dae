package testkit

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Delivery is one opted-in Deployment of the pod runtime's test server in a
// namespace of its own, and its Rollout (of the same name).
type Delivery struct {
	T         testing.TB
	Kube      client.Client
	Namespace string
	Name      string
}

// DeliverySpec says what Deploy creates.
type DeliverySpec struct {
	// Namespace is created with NamespaceLabels and deleted when the test
	// ends.
	Namespace       string
	NamespaceLabels map[string]string
	// Name is the Deployment's (and so the Rollout's and the app label's).
	Name     string
	Image    string
	Replicas int32
	// Annotations are the Deployment's, opting it in (nil: none).
	Annotations map[string]string
	Env         []corev1.EnvVar
	// StableWithin bounds the wait for the first revision to be stable.
	StableWithin time.Duration
}

// Deploy creates the namespace and the Deployment of spec, then waits until
// its Rollout is Idle with a stable revision (within spec.StableWithin) and
// its pods all run, ready (within two minutes).
func Deploy(t testing.TB, cs kubernetes.Interface, kube client.Client, spec DeliverySpec) *Delivery {
	t.Helper()
	d := &Delivery{T: t, Kube: kube, Namespace: spec.Namespace, Name: spec.Name}
	Namespace(t, cs, spec.Namespace, spec.NamespaceLabels)
	dep := Deployment(spec.Namespace, spec.Name, spec.Image, spec.Replicas, spec.Env...)
	dep.Annotations = maps.Clone(spec.Annotations)
	if err := kube.Create(context.Background(), dep); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	d.Wait(spec.StableWithin, "first version stable", IdleWithStable)
	Poll(t, 2*time.Minute, "stable pods running", func(ctx context.Context) error {
		_, err := RunningPods(ctx, cs, spec.Namespace, map[string]string{"app": spec.Name}, int(spec.Replicas))
		return err
	})
	return d
}

// Deployment is a Deployment of the pod runtime's test server: every
// container port answers gRPC and HTTP with the image tag as its version.
func Deployment(ns, name, image string, replicas int32, env ...corev1.EnvVar) *appsv1.Deployment {
	sel := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: image,
					Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}},
					Env:   env,
				}}},
			},
		},
	}
}

// Update sets the image and the pod environment, as a team's CI would.
func (d *Delivery) Update(image string, env ...corev1.EnvVar) {
	d.T.Helper()
	Poll(d.T, 30*time.Second, "update deployment", func(ctx context.Context) error {
		var dep appsv1.Deployment
		if err := d.Kube.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: d.Name}, &dep); err != nil {
			return err
		}
		dep.Spec.Template.Spec.Containers[0].Image = image
		dep.Spec.Template.Spec.Containers[0].Env = env
		return d.Kube.Update(ctx, &dep)
	})
}

// Rollout returns the Rollout now.
func (d *Delivery) Rollout(ctx context.Context) (*v1alpha1.Rollout, error) {
	var ro v1alpha1.Rollout
	err := d.Kube.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: d.Name}, &ro)
	return &ro, err
}

// Wait polls the Rollout until cond returns nil and returns it; it fails
// the test with cond's last error, the phase and the message.
func (d *Delivery) Wait(timeout time.Duration, what string, cond func(*v1alpha1.Rollout) error) *v1alpha1.Rollout {
	d.T.Helper()
	var ro *v1alpha1.Rollout
	Poll(d.T, timeout, what, func(ctx context.Context) error {
		var err error
		if ro, err = d.Rollout(ctx); err != nil {
			return err
		}
		if err := cond(ro); err != nil {
			return fmt.Errorf("%w (phase %s, message %q)", err, ro.Status.Phase, ro.Status.Message)
		}
		return nil
	})
	return ro
}

// CanaryGone returns nil once the canary Deployment does not exist.
func (d *Delivery) CanaryGone(ctx context.Context) error {
	var dep appsv1.Deployment
	err := d.Kube.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: v1alpha1.CanaryName(d.Name)}, &dep)
	if err == nil {
		return fmt.Errorf("canary %s still exists", dep.Name)
	}
	return client.IgnoreNotFound(err)
}

// IdleWithStable holds once the Rollout is Idle with a stable revision.
func IdleWithStable(ro *v1alpha1.Rollout) error {
	if ro.Status.Phase != v1alpha1.PhaseIdle || ro.Status.StableRevision == "" {
		return fmt.Errorf("phase %s, stable %q", ro.Status.Phase, ro.Status.StableRevision)
	}
	return nil
}

// PhaseIs holds once the Rollout is in phase p.
func PhaseIs(p v1alpha1.RolloutPhase) func(*v1alpha1.Rollout) error {
	return func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != p {
			return fmt.Errorf("phase %s, want %s", ro.Status.Phase, p)
		}
		return nil
	}
}
