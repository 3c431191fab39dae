package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/traffic"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
)

// trafficPlane is Sluice's traffic half (traffic controller, ADS and LRS
// servers) run in-process against the shared cluster on a loopback port, so
// that a test can read the controller's confirmations and the load report
// totals directly.
type trafficPlane struct {
	ctrl  *traffic.Controller
	loads *lrs.Aggregator
	addr  string
	// caFile holds the CA that signs the plane's serving certificate.
	caFile string
	kube   client.Client
	nodes  atomic.Int64
}

func startTrafficPlane(t *testing.T) *trafficPlane {
	t.Helper()
	ctx := context.Background()
	if err := env.InstallCRDs(ctx); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	log := testr.NewWithOptions(t, testr.Options{Verbosity: 0})
	mgr, err := manager.New(env.RESTConfig(), manager.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	loads, err := lrs.NewServer(lrs.Options{Interval: 200 * time.Millisecond, Attribute: lrs.AttributeCluster, Logger: log.WithName("lrs")})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Options{Logger: log.WithName("xds"), Registerer: prometheus.NewRegistry(), LoadReporting: loads})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// As the controller serves: TLS, and a token verified by the API
	// server.
	creds, caFile := testServingCredentials(t)
	guard := testGuard(t, auth.GuardOptions{Logger: log.WithName("auth")})
	g := grpc.NewServer(append(guard.ServerOptions(), grpc.Creds(creds), grpc.WaitForHandlers(true))...)
	srv.Register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	ctrl, err := traffic.New(mgr, srv, traffic.Options{Logger: log.WithName("traffic"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("traffic controller: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
		g.Stop()
	})
	kube, err := client.New(env.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &trafficPlane{ctrl: ctrl, loads: loads.Aggregator(), addr: lis.Addr().String(), caFile: caFile, kube: kube}
}

// client returns grpc-go's xDS client for xds:///checkout.<ns>, with a node
// id of its own, configured by this plane.
func (p *trafficPlane) client(t *testing.T, ns string) testgrpc.TestServiceClient {
	t.Helper()
	node := fmt.Sprintf("xds-e2e-%s-%d", ns, p.nodes.Add(1))
	conn := dialXDS(t, "xds:///checkout."+ns, authBootstrap(t, p.addr, p.caFile, ns, node))
	c := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("first call through xDS: %v", err)
	}
	return c
}

const trafficRollout = "checkout-traffic"

// deployCheckout runs service "checkout" in ns: a stable Deployment (image tag
// v1) and a canary Deployment (v2, one pod) controlled by the Rollout
// "checkout-traffic" with the given delivery, in phase Progressing at weight
// 0. The Rollout is not named after a Deployment, so no rollout controller
// drives it: the test moves its status by hand. Labels are set as the
// mutating webhook sets them, whether or not it is registered.
func (p *trafficPlane) deployCheckout(t *testing.T, ns string, stable int32, delivery v1alpha1.Delivery) {
	t.Helper()
	ctx := context.Background()
	delivery.Service = "checkout"
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: trafficRollout}, Spec: v1alpha1.RolloutSpec{Delivery: delivery}}
	if err := p.kube.Create(ctx, ro); err != nil {
		t.Fatalf("create rollout: %v", err)
	}
	p.setStatus(t, ns, v1alpha1.PhaseProgressing, 0)
	label := func(d *appsv1.Deployment, track string) *appsv1.Deployment {
		d.Annotations = map[string]string{v1alpha1.AnnotationService: "checkout"}
		d.Labels = map[string]string{v1alpha1.LabelService: "checkout", v1alpha1.LabelTrack: track}
		d.Spec.Template.Labels[v1alpha1.LabelService] = "checkout"
		d.Spec.Template.Labels[v1alpha1.LabelTrack] = track
		return d
	}
	st := label(deployment(ns, "checkout", "registry.example/shop/checkout:v1", stable), v1alpha1.TrackStable)
	// Named <rollout>-canary and written by the controller's own identity
	// (the e2e controller runs with the test's credentials): only such a
	// Deployment keeps the canary track label at admission.
	canary := label(deployment(ns, trafficRollout+"-canary", "registry.example/shop/checkout:v2", 1), v1alpha1.TrackCanary)
	canary.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Rollout",
		Name: ro.Name, UID: ro.UID, Controller: ptr.To(true)}}
	for _, d := range []*appsv1.Deployment{st, canary} {
		if _, err := env.Client().AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create deployment %s: %v", d.Name, err)
		}
	}
	eventually(t, 2*time.Minute, "checkout pods running", func(ctx context.Context) error {
		if _, err := runningPods(ctx, ns, map[string]string{"app": "checkout"}, int(stable)); err != nil {
			return fmt.Errorf("stable: %w", err)
		}
		if _, err := runningPods(ctx, ns, map[string]string{"app": trafficRollout + "-canary"}, 1); err != nil {
			return fmt.Errorf("canary: %w", err)
		}
		return nil
	})
}

// setStatus writes the Rollout's phase and weight, as the rollout controller
// would.
func (p *trafficPlane) setStatus(t *testing.T, ns string, phase v1alpha1.RolloutPhase, w v1alpha1.BasisPoints) {
	t.Helper()
	p.updateRollout(t, ns, func(ro *v1alpha1.Rollout) error {
		ro.Status.Phase, ro.Status.CurrentWeight, ro.Status.CurrentWeightPercent = phase, w, w.String()
		return p.kube.Status().Update(context.Background(), ro)
	})
}

func (p *trafficPlane) updateRollout(t *testing.T, ns string, update func(*v1alpha1.Rollout) error) {
	t.Helper()
	eventually(t, 30*time.Second, "update rollout", func(ctx context.Context) error {
		var ro v1alpha1.Rollout
		if err := p.kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: trafficRollout}, &ro); err != nil {
			return err
		}
		return update(&ro)
	})
}

// confirm waits until the xDS clients (at least one) acknowledged weight w.
func (p *trafficPlane) confirm(t *testing.T, ns string, w v1alpha1.BasisPoints) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conf, err := p.ctrl.Confirm(ctx, ns, "checkout", router.Weight(w))
	if err != nil {
		t.Fatalf("confirm %s: %v", w, err)
	}
	if conf.Acked < 1 || conf.Nacked > 0 {
		t.Fatalf("confirm %s: %+v, want acknowledged by the client and no NACK", w, conf)
	}
}

// xdsCall makes one RPC and returns the version (image tag) that answered.
func xdsCall(ctx context.Context, c testgrpc.TestServiceClient, md ...string) (string, error) {
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return "", err
	}
	return resp.GetServerId(), nil
}

// xdsSplit sends n RPCs from 8 workers and counts answers per version.
func xdsSplit(t *testing.T, c testgrpc.TestServiceClient, n int) map[string]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		errs   []error
		wg     sync.WaitGroup
		next   atomic.Int64
	)
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				v, err := xdsCall(context.Background(), c)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					counts[v]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d RPCs failed, first: %v", len(errs), n, errs[0])
	}
	return counts
}

// binomialBound is the half-width of the 99.999% interval (z = 4.42, normal
// approximation) of the share of n trials that succeed with probability p.
// A test makes a few such checks per run and runs on every CI run: at 99.9%
// a correct split would still fail one run in a few hundred. At n = 10,000
// the bound is ±1.3 points at p = 0.1, still far below any wrong weight.
func binomialBound(p float64, n int) float64 {
	return 4.42 * math.Sqrt(p*(1-p)/float64(n))
}

func TestXDSWeightedSplitAndLoadReports(t *testing.T) {
	ns := newNamespace(t, nil)
	p := startTrafficPlane(t)
	p.deployCheckout(t, ns, 2, v1alpha1.Delivery{Mode: v1alpha1.ModeCanary})
	c := p.client(t, ns)
	for _, w := range []v1alpha1.BasisPoints{1000, 5000} {
		p.setStatus(t, ns, v1alpha1.PhaseProgressing, w)
		p.confirm(t, ns, w)
		const n = 10_000
		counts := xdsSplit(t, c, n)
		if counts["v1"]+counts["v2"] != n {
			t.Fatalf("weight %s: answers %v, want only v1 and v2", w, counts)
		}
		want := float64(w) / 10_000
		got := float64(counts["v2"]) / n
		if bound := binomialBound(want, n); math.Abs(got-want) > bound {
			t.Errorf("weight %s: %.4f of %d RPCs reached the canary, want %.4f ± %.4f (99.999%%)", w, got, n, want, bound)
		} else {
			t.Logf("weight %s: %.4f of %d RPCs on the canary (99.999%% interval %.4f ± %.4f)", w, got, n, want, bound)
		}
	}

	// The client keeps its stream open and reports every 200ms; once the
	// traffic stopped, the load reports add up to what the pods served.
	pods, err := env.Client().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: v1alpha1.LabelService + "=checkout"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "load reports equal the pods' counts", func(context.Context) error {
		served := map[string]uint64{}
		for _, pod := range pods.Items {
			served[pod.Labels[v1alpha1.LabelTrack]] += uint64(env.PodRuntime().Counts(ns, pod.Name).Requests)
		}
		// Load is kept per revision; the pods' counts are per track.
		totals := map[string]lrs.Totals{}
		for k, t := range p.loads.Totals() {
			if k.Namespace == ns && k.Service == "checkout" {
				totals[k.Track] = totals[k.Track].Add(t)
			}
		}
		for _, track := range []string{v1alpha1.TrackStable, v1alpha1.TrackCanary} {
			got := totals[track]
			if got.Requests != served[track] || got.InFlight != 0 {
				return fmt.Errorf("%s: load reports say %d requests (%d in flight), the pods served %d", track, got.Requests, got.InFlight, served[track])
			}
		}
		if served[v1alpha1.TrackStable] == 0 || served[v1alpha1.TrackCanary] == 0 {
			return errors.New("a track served nothing")
		}
		return nil
	})
}

func TestXDSCohortReachesTheNewVersion(t *testing.T) {
	ns := newNamespace(t, nil)
	p := startTrafficPlane(t)
	cohort := &v1alpha1.Cohort{Source: v1alpha1.SourceHeader, Name: "x-cohort", Match: v1alpha1.MatchExact, Value: "beta"}
	p.deployCheckout(t, ns, 2, v1alpha1.Delivery{Mode: v1alpha1.ModeBeta, Cohort: cohort})
	c := p.client(t, ns)
	p.confirm(t, ns, 0)
	// grpc-go acknowledges a route configuration when its xDS client has
	// accepted it and only then hands it to the channel: the first call
	// right after the ACK may still be routed by the previous routes.
	eventually(t, 10*time.Second, "the cohort's first call reaches v2", func(ctx context.Context) error {
		if v, err := xdsCall(ctx, c, "x-cohort", "beta"); err != nil || v != "v2" {
			return fmt.Errorf("answered by %q (%v)", v, err)
		}
		return nil
	})
	for i := range 500 {
		v, err := xdsCall(context.Background(), c, "x-cohort", "beta")
		if err != nil || v != "v2" {
			t.Fatalf("cohort request %d: answered by %q (%v), want v2", i, v, err)
		}
		v, err = xdsCall(context.Background(), c)
		if err != nil || v != "v1" {
			t.Fatalf("request %d outside the cohort: answered by %q (%v), want v1 at weight 0", i, v, err)
		}
	}
}

func TestXDSStickySplit(t *testing.T) {
	ns := newNamespace(t, nil)
	p := startTrafficPlane(t)
	p.deployCheckout(t, ns, 2, v1alpha1.Delivery{Mode: v1alpha1.ModeAB,
		Sticky: &v1alpha1.Sticky{Source: v1alpha1.SourceHeader, Name: "x-user-id"}, Split: ptr.To(v1alpha1.BasisPoints(5000))})
	c := p.client(t, ns)
	p.confirm(t, ns, 0)
	const users = 200
	// versionsOf asks 5 times per user and requires one answer per user.
	versionsOf := func() (map[string]string, error) {
		out := map[string]string{}
		for u := range users {
			user := fmt.Sprintf("user-%d", u)
			for i := range 5 {
				v, err := xdsCall(context.Background(), c, "x-user-id", user)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", user, err)
				}
				if i > 0 && v != out[user] {
					return nil, fmt.Errorf("%s reached %s, then %s: not sticky", user, out[user], v)
				}
				out[user] = v
			}
		}
		return out, nil
	}
	versionOf := func() map[string]string {
		t.Helper()
		out, err := versionsOf()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The split is measured once the client routes users by the sticky
	// route over a ring holding every pod. Before that, requests follow the
	// weighted default route (not sticky), or users hash onto fewer pods and
	// move when the ring is rebuilt. 50 probe users, each asking 3 times,
	// must be sticky and reach all three pods (shares 1/2, 1/4, 1/4: all are
	// reached with probability > 1 - 1e-6).
	eventually(t, 30*time.Second, "sticky routing over every pod", func(ctx context.Context) error {
		// kwok hands a deleted pod's IP to a new pod; a connection the
		// client opened before the old pod's server let go of the address
		// is answered by that server until it drains. Only answers from
		// this namespace's pods count.
		var list corev1.PodList
		if err := p.kube.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		current := map[string]bool{}
		for _, pod := range list.Items {
			current[pod.Name] = true
		}
		pods := map[string]bool{}
		for u := range 50 {
			first := ""
			for range 3 {
				cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-user-id", fmt.Sprintf("probe-%d", u)), 10*time.Second)
				resp, err := c.UnaryCall(cctx, &testgrpc.SimpleRequest{})
				cancel()
				if err != nil {
					return err
				}
				if first == "" {
					first = resp.GetHostname()
				} else if resp.GetHostname() != first {
					return fmt.Errorf("probe-%d reached %s, then %s: not sticky yet", u, first, resp.GetHostname())
				}
			}
			if !current[first] {
				return fmt.Errorf("probe-%d was answered by %s, not a pod of namespace %s (a previous pod's server still draining)", u, first, ns)
			}
			pods[first] = true
		}
		if len(pods) < 3 {
			return fmt.Errorf("50 users reached only the pods %v", pods)
		}
		return nil
	})
	at50 := versionOf()
	onCanary := 0
	for _, v := range at50 {
		if v == "v2" {
			onCanary++
		}
	}
	if got, bound := float64(onCanary)/users, binomialBound(0.5, users); math.Abs(got-0.5) > bound {
		t.Errorf("%.3f of users on the new version at a 50%% split, want 0.5 ± %.3f", got, bound)
	}
	// Raising the split moves users from stable to the new version only.
	p.updateRollout(t, ns, func(ro *v1alpha1.Rollout) error {
		ro.Spec.Delivery.Split = ptr.To(v1alpha1.BasisPoints(8000))
		return p.kube.Update(context.Background(), ro)
	})
	// While the new split reaches the client, users legitimately move (one
	// may do so between two of its asks): wait until two passes in a row
	// find every user sticky, the same, and more of them on the new version.
	eventually(t, 30*time.Second, "80% split in effect", func(context.Context) error {
		first, err := versionsOf()
		if err != nil {
			return err
		}
		second, err := versionsOf()
		if err != nil {
			return err
		}
		var n int
		for user, v := range second {
			if first[user] != v {
				return fmt.Errorf("%s moved from %s to %s between two passes: the split is still changing", user, first[user], v)
			}
			if v == "v2" {
				n++
			}
		}
		if n <= onCanary {
			return fmt.Errorf("%d users on the new version, still %d or fewer", n, onCanary)
		}
		return nil
	})
	moved := 0
	for user, v := range versionOf() {
		if at50[user] == "v2" && v != "v2" {
			moved++
		}
	}
	// The router's guarantee allows at most one ring entry per endpoint to
	// move back (3 endpoints of 4096 entries): almost never a user.
	if moved > 1 {
		t.Errorf("%d users moved from the new version back to stable when the split grew", moved)
	}
}

// xdsLoad is continuous traffic from a few workers, remembering the last
// answers and every failure.
type xdsLoad struct {
	mu     sync.Mutex
	recent []string // last 200 answers, newest last
	total  int
	failed []error
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startXDSLoad(c testgrpc.TestServiceClient, workers int) *xdsLoad {
	l := &xdsLoad{stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				v, err := xdsCall(context.Background(), c)
				l.mu.Lock()
				l.total++
				if err != nil {
					l.failed = append(l.failed, err)
				} else {
					l.recent = append(l.recent, v)
					if len(l.recent) > 200 {
						l.recent = l.recent[len(l.recent)-200:]
					}
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// forget drops the answers seen so far.
func (l *xdsLoad) forget() {
	l.mu.Lock()
	l.recent = l.recent[:0]
	l.mu.Unlock()
}

// recentFrom checks that 200 answers arrived since forget, all from version
// v ("" accepts any version).
func (l *xdsLoad) recentFrom(v string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recent) < 200 {
		return fmt.Errorf("only %d answers so far", len(l.recent))
	}
	for _, got := range l.recent {
		if v != "" && got != v {
			return fmt.Errorf("an answer from %s among the last 200", got)
		}
	}
	return nil
}

// finish stops the traffic and fails the test if any RPC failed.
func (l *xdsLoad) finish(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if len(l.failed) > 0 {
		t.Fatalf("%d of %d RPCs failed %s, first: %v", len(l.failed), l.total, what, l.failed[0])
	}
	t.Logf("%d RPCs, none failed %s", l.total, what)
}

func TestXDSWeightStepsUnderTrafficFailNoRPC(t *testing.T) {
	ns := newNamespace(t, nil)
	p := startTrafficPlane(t)
	p.deployCheckout(t, ns, 2, v1alpha1.Delivery{Mode: v1alpha1.ModeCanary})
	l := startXDSLoad(p.client(t, ns), 4)
	for _, w := range []v1alpha1.BasisPoints{0, 1000, 5000, 10_000, 0} {
		p.setStatus(t, ns, v1alpha1.PhaseProgressing, w)
		p.confirm(t, ns, w)
		l.forget()
		want := ""
		switch w {
		case 0:
			want = "v1"
		case 10_000:
			want = "v2"
		}
		eventually(t, 30*time.Second, fmt.Sprintf("traffic at %s (all from %q)", w, want), func(context.Context) error { return l.recentFrom(want) })
	}
	l.finish(t, "while the weights moved through 0, 10%, 50%, 100%, 0")
}

// TestXDSScaleDownUnderTrafficFailsNoRPC: pods that terminate leave the
// endpoints as soon as they get a deletionTimestamp, so no client keeps
// sending to them.
func TestXDSScaleDownUnderTrafficFailsNoRPC(t *testing.T) {
	ns := newNamespace(t, nil)
	p := startTrafficPlane(t)
	p.deployCheckout(t, ns, 4, v1alpha1.Delivery{Mode: v1alpha1.ModeCanary})
	l := startXDSLoad(p.client(t, ns), 4)
	eventually(t, 30*time.Second, "traffic flowing", func(context.Context) error { return l.recentFrom("v1") })
	scale, err := env.Client().AppsV1().Deployments(ns).GetScale(context.Background(), "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 1
	if _, err := env.Client().AppsV1().Deployments(ns).UpdateScale(context.Background(), "checkout", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "three stable pods gone", func(ctx context.Context) error {
		_, err := runningPods(ctx, ns, map[string]string{"app": "checkout"}, 1)
		return err
	})
	l.forget()
	eventually(t, 30*time.Second, "traffic on the remaining pod", func(context.Context) error { return l.recentFrom("v1") })
	l.finish(t, "while 3 of 4 stable pods terminated")
}
