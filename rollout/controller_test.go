package rollout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/rollout/metrics"
	"github.com/sluice-dev/sluice/router"
)

// The controller tests run the real controller against a real local
// cluster (kube-apiserver, controller-manager, scheduler, kwok). The
// admission webhook and the traffic controller are other packages: the test
// applies the webhook's labels and pause itself, and a confirmation function
// stands in for the proxies, checking that a weight is stored on the Rollout
// before it is confirmed.

var (
	clusterOnce sync.Once
	testCluster *cluster.Cluster
	clusterErr  error
)

func localCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local cluster")
	}
	clusterOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-rollout-")
		if err != nil {
			clusterErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		testCluster, clusterErr = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Progress: os.Stderr,
			Log: funcr.New(func(string, string) {}, funcr.Options{})})
		if clusterErr == nil {
			clusterErr = testCluster.InstallCRDs(ctx)
		}
	})
	if clusterErr != nil {
		t.Fatalf("local cluster: %v", clusterErr)
	}
	return testCluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testCluster != nil {
		testCluster.Stop()
	}
	os.Exit(code)
}

// harness runs one controller against the cluster.
type harness struct {
	t  *testing.T
	c  client.Client
	ns string

	mu         sync.Mutex
	confirmed  []v1alpha1.BasisPoints
	canaryErrs float64 // canary error ratio the metric source reports
}

// newHarness starts a controller using samples (nil: the harness' own
// synthetic source) in namespace ns (empty: a fresh name).
func newHarness(t *testing.T, samples metrics.Source, ns ...string) *harness {
	env := localCluster(t)
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.RESTConfig(), ctrl.Options{Scheme: scheme,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}, // one controller per test
		Logger:     funcr.New(func(p, a string) { t.Log(p, a) }, funcr.Options{Verbosity: 0})})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: mgr.GetClient()}
	h.ns = fmt.Sprintf("rollout-%d", time.Now().UnixNano()%1_000_000)
	if len(ns) > 0 {
		h.ns = ns[0]
	}
	if samples == nil {
		samples = metrics.SourceFunc(h.sample)
	}
	_, err = New(mgr, Options{
		Traffic:    TrafficFunc(h.confirm),
		Reports:    TrafficReporterFunc(func(string, string) TrafficReport { return TrafficReport{} }),
		Policies:   PolicySourceFunc(func() ([]*policies.Compiled, error) { return nil, nil }),
		Samples:    samples,
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}}
	if _, err := env.Client().CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return h
}

// confirm checks that the weight is what the Rollout stores, as the traffic
// controller publishes it, and records it.
func (h *harness) confirm(ctx context.Context, namespace, service string, w router.Weight) (Confirmation, error) {
	var ro v1alpha1.Rollout
	if err := h.c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: service}, &ro); err != nil {
		return Confirmation{}, err
	}
	if router.Weight(ro.Status.CurrentWeight) != w {
		<-ctx.Done()
		return Confirmation{}, fmt.Errorf("weight %s is not published (status has %s): %w", w, ro.Status.CurrentWeight, ctx.Err())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.confirmed); n == 0 || h.confirmed[n-1] != v1alpha1.BasisPoints(w) {
		h.confirmed = append(h.confirmed, v1alpha1.BasisPoints(w))
	}
	return Confirmation{Acked: 2}, nil
}

// sample reports 200 requests a second per track; the canary fails
// canaryErrs of them.
func (h *harness) sample(_ context.Context, q metrics.Query) (metrics.Sample, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := uint64(200 * q.Window.Seconds())
	s := metrics.Sample{Requests: n, Window: q.Window}
	if q.Track == v1alpha1.TrackCanary {
		s.Errors = uint64(float64(n) * h.canaryErrs)
	}
	return s, nil
}

// deploy applies the Deployment with the given image as the mutating webhook
// would leave it: labels with revision rev, and on an update paused with rev
// pending.
func (h *harness) deploy(ctx context.Context, name, image, rev string) {
	h.t.Helper()
	labels := map[string]string{"app": name, v1alpha1.LabelService: name, v1alpha1.LabelTrack: v1alpha1.TrackStable,
		v1alpha1.LabelRevision: rev}
	var d appsv1.Deployment
	err := h.c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &d)
	if err != nil {
		d = appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name, Labels: labels, Annotations: map[string]string{
				v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationSteps: "10,50", v1alpha1.AnnotationStepInterval: "1s"}},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image,
						Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}}}}},
				},
			},
		}
		if err := h.c.Create(ctx, &d); err != nil {
			h.t.Fatal(err)
		}
		return
	}
	d.Spec.Template.Labels = labels
	d.Spec.Template.Spec.Containers[0].Image = image
	d.Spec.Paused = true
	d.Annotations[v1alpha1.AnnotationPendingRevision] = rev
	if err := h.c.Update(ctx, &d); err != nil {
		h.t.Fatal(err)
	}
}

// waitRollout polls the Rollout until cond holds.
func (h *harness) waitRollout(name, what string, timeout time.Duration, cond func(*v1alpha1.Rollout) bool) *v1alpha1.Rollout {
	h.t.Helper()
	var ro v1alpha1.Rollout
	pollUntil(h.t, what, timeout, func() error {
		if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, &ro); err != nil {
			return err
		}
		if !cond(&ro) {
			return fmt.Errorf("phase %s, message %q", ro.Status.Phase, ro.Status.Message)
		}
		return nil
	})
	return &ro
}

func (h *harness) canaryExists(name string) bool {
	var d appsv1.Deployment
	err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: v1alpha1.CanaryName(name)}, &d)
	return err == nil && d.DeletionTimestamp == nil
}

func TestControllerPromotesThenRollsBack(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.deploy(ctx, "checkout", "example.com/checkout:v1", "r1")
	h.waitRollout("checkout", "first deployment stable", time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseIdle && ro.Status.StableRevision == "r1"
	})

	h.deploy(ctx, "checkout", "example.com/checkout:v2", "r2")
	h.waitRollout("checkout", "canary progressing", time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseProgressing && ro.Status.CanaryRevision == "r2"
	})
	var canary appsv1.Deployment
	pollUntil(t, "canary created", time.Minute, func() error {
		return h.c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: "checkout-canary"}, &canary)
	})
	if got := canary.Spec.Template.Labels[v1alpha1.LabelTrack]; got != v1alpha1.TrackCanary {
		t.Errorf("canary template track = %q", got)
	}
	if got := canary.Spec.Template.Spec.Containers[0].Image; got != "example.com/checkout:v2" {
		t.Errorf("canary image = %q", got)
	}
	h.waitRollout("checkout", "promoted", 3*time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseSucceeded && ro.Status.StableRevision == "r2"
	})
	if h.canaryExists("checkout") {
		t.Errorf("canary still exists after promotion")
	}
	var d appsv1.Deployment
	if err := h.c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: "checkout"}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Paused || d.Annotations[v1alpha1.AnnotationPendingRevision] != "" {
		t.Errorf("promoted Deployment paused=%v pending=%q", d.Spec.Paused, d.Annotations[v1alpha1.AnnotationPendingRevision])
	}
	h.mu.Lock()
	got := slices.Clone(h.confirmed)
	h.confirmed = nil
	h.canaryErrs = 0.3
	h.mu.Unlock()
	if want := []v1alpha1.BasisPoints{1000, 5000, 0}; !slices.Equal(got, want) {
		t.Errorf("confirmed weights %v, want %v", got, want)
	}

	h.deploy(ctx, "checkout", "example.com/checkout:v3", "r3")
	ro := h.waitRollout("checkout", "rolled back", 3*time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseRolledBack && len(ro.Status.FailedRevisions) == 1
	})
	if f := ro.Status.FailedRevisions[0]; f.Revision != "r3" || f.Reason == "" {
		t.Errorf("failed revision %+v, want r3 with a reason", f)
	}
	pollUntil(t, "canary deleted after rollback", time.Minute, func() error {
		if h.canaryExists("checkout") {
			return fmt.Errorf("canary exists")
		}
		return nil
	})
	h.mu.Lock()
	got = slices.Clone(h.confirmed)
	h.mu.Unlock()
	if len(got) == 0 || got[len(got)-1] != 0 {
		t.Errorf("confirmed weights %v, want the last to be 0 before the canary was deleted", got)
	}
	if err := h.c.Get(ctx, types.NamespacedName{Namespace: h.ns, Name: "checkout"}, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Spec.Paused {
		t.Errorf("rolled-back Deployment was unpaused; the old pods must keep serving")
	}
}

func pollUntil(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}
