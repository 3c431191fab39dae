package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// The sample service of the story.
const (
	Namespace = "shop"
	Service   = "checkout"
	image     = "registry.example/shop/checkout:"
)

// Options configure the story.
type Options struct {
	// Client reads and writes Deployments and Rollouts; its scheme knows
	// apps/v1, core/v1 and sluice.dev/v1alpha1.
	Client client.Client
	// Bootstrap is the grpc-go xDS bootstrap (JSON) pointing at Sluice.
	Bootstrap []byte
	// Promote runs `sluice promote <name> -n <namespace>`.
	Promote func(ctx context.Context, namespace, name string) error
	// Out receives the narration and the live view.
	Out io.Writer
	// RPS is the request rate of the everyone client; default 50. The beta
	// cohort client sends a third of it.
	RPS int
}

// Play runs the story: v2 goes out by canary and is promoted; v3, failing
// 20% of its requests, is rolled back by Sluice on its own; v4 reaches a
// beta cohort first and everyone else after `sluice promote`. It returns
// when the story is over, or with the first thing that went wrong.
func Play(ctx context.Context, o Options) error {
	if o.RPS == 0 {
		o.RPS = 50
	}
	s := &story{Options: o, start: time.Now()}
	return s.play(ctx)
}

type story struct {
	Options
	start       time.Time
	users, beta *Load
}

func (s *story) say(format string, args ...any) {
	fmt.Fprintf(s.Out, "\n==> "+format+"\n", args...)
}

func (s *story) play(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.say("namespace %s (team payments) and Deployment %s v1, opted in to canary delivery", Namespace, Service)
	if err := s.setUp(ctx); err != nil {
		return err
	}
	if err := s.waitAvailable(ctx); err != nil {
		return err
	}
	target := "xds:///" + Service + "." + Namespace
	var err error
	if s.users, err = NewLoad(s.Bootstrap, target, s.RPS, nil); err != nil {
		return err
	}
	if s.beta, err = NewLoad(s.Bootstrap, target, s.RPS/3+1, map[string]string{"x-cohort": "beta"}); err != nil {
		return err
	}
	go s.users.Run(ctx)
	go s.beta.Run(ctx)
	s.say("proxyless gRPC clients call %s: everyone at %d req/s, the beta cohort (x-cohort: beta) at %d req/s", target, s.RPS, s.RPS/3+1)
	seen := 0
	if err := s.watch(ctx, "v1 serving everyone", time.Minute, until(func(*v1alpha1.Rollout) bool { seen++; return seen >= 4 })); err != nil {
		return err
	}

	s.say("v2: a one-line change (the image tag); the webhook pauses the Deployment and Sluice runs a canary")
	if err := s.update(ctx, func(d *appsv1.Deployment) { setImage(d, "v2", "") }); err != nil {
		return err
	}
	if err := s.watch(ctx, "v2 promoted", 3*time.Minute, phaseIs(v1alpha1.PhaseSucceeded)); err != nil {
		return err
	}

	s.say("v3 fails 20%% of its requests (SIM_ERROR_RATE=0.2): Sluice must roll it back by itself")
	if err := s.update(ctx, func(d *appsv1.Deployment) { setImage(d, "v3", "0.2") }); err != nil {
		return err
	}
	if err := s.watch(ctx, "v3 rolled back", 3*time.Minute, phaseIs(v1alpha1.PhaseRolledBack)); err != nil {
		return err
	}

	s.say("v4 in beta: only the cohort x-cohort=beta sees it until someone runs `sluice promote`")
	if err := s.update(ctx, func(d *appsv1.Deployment) {
		setImage(d, "v4", "")
		d.Annotations[v1alpha1.AnnotationRollout] = "beta"
		d.Annotations[v1alpha1.AnnotationCohort] = "header:x-cohort=beta"
	}); err != nil {
		return err
	}
	held := 0
	if err := s.watch(ctx, "beta cohort on v4, everyone else on v2", 2*time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		if ro.Status.Phase == v1alpha1.PhaseRolledBack {
			return phaseIs(v1alpha1.PhaseSucceeded)(ro)
		}
		if ro.Status.Phase == v1alpha1.PhaseProgressing && ro.Status.CanaryRevision != "" {
			held++
		}
		return held >= 8, nil
	}); err != nil {
		return err
	}
	s.say("$ sluice promote %s -n %s", Service, Namespace)
	if err := s.Promote(ctx, Namespace, Service); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if err := s.watch(ctx, "v4 promoted to everyone", 3*time.Minute, phaseIs(v1alpha1.PhaseSucceeded)); err != nil {
		return err
	}
	s.say("the story is over after %s; the cluster keeps running until Ctrl-C", time.Since(s.start).Round(time.Second))
	return nil
}

// phaseIs waits for phase p, and gives up at once when the rollout ends in
// the other terminal phase: the story cannot happen any more, and the reason
// is on the Rollout.
func phaseIs(p v1alpha1.RolloutPhase) func(*v1alpha1.Rollout) (bool, error) {
	return func(ro *v1alpha1.Rollout) (bool, error) {
		switch ph := ro.Status.Phase; {
		case ph == p:
			return true, nil
		case p == v1alpha1.PhaseSucceeded && ph == v1alpha1.PhaseRolledBack:
			reason := ro.Status.Message
			if n := len(ro.Status.FailedRevisions); n > 0 {
				reason = ro.Status.FailedRevisions[n-1].Reason
			}
			return false, fmt.Errorf("revision %s was rolled back instead of promoted: %s", ro.Status.CanaryRevision, reason)
		case p == v1alpha1.PhaseRolledBack && ph == v1alpha1.PhaseSucceeded:
			return false, fmt.Errorf("revision %s was promoted although it fails requests: the analysis missed it", ro.Status.StableRevision)
		}
		return false, nil
	}
}

// until adapts a condition that cannot fail.
func until(done func(*v1alpha1.Rollout) bool) func(*v1alpha1.Rollout) (bool, error) {
	return func(ro *v1alpha1.Rollout) (bool, error) { return done(ro), nil }
}

// watch prints the live view once a second until done says so.
func (s *story) watch(ctx context.Context, goal string, timeout time.Duration, done func(*v1alpha1.Rollout) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		var ro v1alpha1.Rollout
		err := s.Client.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: Service}, &ro)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("read rollout: %w", err)
		}
		fmt.Fprintln(s.Out, s.line(&ro))
		if err == nil {
			ok, err := done(&ro)
			if err != nil {
				return fmt.Errorf("%s: %w", goal, err)
			}
			if ok {
				fmt.Fprintf(s.Out, "    %s\n", goal)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s (rollout phase %q: %s)", goal, timeout, ro.Status.Phase, ro.Status.Message)
		}
	}
}

// line is one row of the live view.
func (s *story) line(ro *v1alpha1.Rollout) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%4.0fs] %-11s weight %-6s", time.Since(s.start).Seconds(), orDash(string(ro.Status.Phase)), orDash(ro.Status.CurrentWeightPercent))
	fmt.Fprintf(&b, " | everyone: %-34s | beta: %-30s", s.users.Take(), s.beta.Take())
	if n := len(ro.Status.Analysis); n > 0 {
		d := ro.Status.Analysis[n-1]
		fmt.Fprintf(&b, " | %s %s (limit %s, n=%d) %s", d.Metric, d.Value, d.Threshold, d.Samples, d.Verdict)
	}
	if ro.Status.Message != "" {
		fmt.Fprintf(&b, " | %s", ro.Status.Message)
	}
	return fit(b.String(), ViewWidth)
}

// ViewWidth is the widest line of the live view, in columns: a line never
// wraps in a terminal that wide. The dashboard shows the whole message.
const ViewWidth = 200

// fit cuts s to at most width runes, ending in "…" when it was cut.
func fit(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (s *story) setUp(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{v1alpha1.LabelTeam: "payments"}}}
	if err := s.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace: %w", err)
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: Service, Annotations: map[string]string{
			v1alpha1.AnnotationRollout:      "canary",
			v1alpha1.AnnotationSteps:        "10,25,50",
			v1alpha1.AnnotationStepInterval: "5s",
			v1alpha1.AnnotationMaxErrorRate: "1%",
		}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": Service}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": Service}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: image + "v1",
					Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
					},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 8080}}},
				}}},
			},
			Strategy: appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0))}},
		},
	}
	if err := s.Client.Create(ctx, d); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return errors.New("namespace shop already holds the demo's checkout Deployment: the demo runs on a fresh local cluster (delete namespace shop first)")
		}
		return fmt.Errorf("create deployment: %w", err)
	}
	return nil
}

// waitAvailable waits until every replica of the Deployment is available.
func (s *story) waitAvailable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		var d appsv1.Deployment
		if err := s.Client.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: Service}, &d); err != nil {
			return fmt.Errorf("read deployment: %w", err)
		}
		if d.Spec.Replicas != nil && d.Status.AvailableReplicas == *d.Spec.Replicas && d.Status.ObservedGeneration == d.Generation {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("deployment %s/%s not available: %w", Namespace, Service, ctx.Err())
		case <-t.C:
		}
	}
}

// update changes the Deployment, retrying on conflicts.
func (s *story) update(ctx context.Context, change func(*appsv1.Deployment)) error {
	for {
		var d appsv1.Deployment
		if err := s.Client.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: Service}, &d); err != nil {
			return fmt.Errorf("read deployment: %w", err)
		}
		change(&d)
		err := s.Client.Update(ctx, &d)
		if err == nil || !apierrors.IsConflict(err) {
			if err != nil {
				return fmt.Errorf("update deployment: %w", err)
			}
			return nil
		}
	}
}

// setImage sets the image tag and the fault injected by the pod runtime.
func setImage(d *appsv1.Deployment, tag, errorRate string) {
	c := &d.Spec.Template.Spec.Containers[0]
	c.Image = image + tag
	c.Env = nil
	if errorRate != "" {
		c.Env = []corev1.EnvVar{{Name: "SIM_ERROR_RATE", Value: errorRate}}
	}
}
