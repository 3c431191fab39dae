package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/xds/auth"
	// grpc-go's xDS client sends the bootstrap's token only with this.
	_ "github.com/sluice-dev/sluice/xds/auth/callcreds"
)

func certsCAFile(ctx context.Context, path string) error {
	return certs.WriteCAFile(ctx, env.Client(), sluiceNamespace, "sluice-webhook-tls", path)
}

// kube is a client that knows Rollouts.
func kube(t testing.TB) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.RESTConfig(), client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var namespaces atomic.Int64

// service is one opted-in Deployment, checkout, in a namespace of its own.
type service struct {
	t     testing.TB
	kube  client.Client
	ns    string
	token string // the clients' token file, once minted
}

// deploy creates a namespace and checkout at image with the rollout
// annotations, and waits until it is stable with its pods running.
func deploy(t testing.TB, image string, annotations map[string]string) *service {
	t.Helper()
	s := &service{t: t, kube: kube(t), ns: fmt.Sprintf("chaos-%d-%d", namespaces.Add(1), time.Now().UnixNano()%100000)}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns, Labels: map[string]string{"sluice.dev/team": "shop"}}}
	if err := s.kube.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := s.kube.Delete(context.Background(), ns); err != nil {
			t.Errorf("delete namespace %s: %v", s.ns, err)
		}
	})
	sel := map[string]string{"app": "checkout"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "checkout", Annotations: map[string]string{v1alpha1.AnnotationRollout: "canary"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: image,
					Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}},
				}}},
			},
		},
	}
	for k, v := range annotations {
		d.Annotations[k] = v
	}
	if err := s.kube.Create(context.Background(), d); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	s.wait(3*time.Minute, "first version stable", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseIdle || ro.Status.StableRevision == "" {
			return fmt.Errorf("phase %s, stable %q", ro.Status.Phase, ro.Status.StableRevision)
		}
		return nil
	})
	poll(t, 2*time.Minute, "stable pods running", func(ctx context.Context) error {
		pods, err := env.Client().CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=checkout"})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of 3 pods ready", ready)
		}
		return nil
	})
	return s
}

// update sets the image, as a team's CI would.
func (s *service) update(image string) {
	s.t.Helper()
	poll(s.t, 30*time.Second, "update deployment", func(ctx context.Context) error {
		var d appsv1.Deployment
		if err := s.kube.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: "checkout"}, &d); err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = image
		return s.kube.Update(ctx, &d)
	})
}

// rollout returns the Rollout now.
func (s *service) rollout(ctx context.Context) (*v1alpha1.Rollout, error) {
	var ro v1alpha1.Rollout
	err := s.kube.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: "checkout"}, &ro)
	return &ro, err
}

// wait polls the Rollout until cond returns nil.
func (s *service) wait(timeout time.Duration, what string, cond func(*v1alpha1.Rollout) error) *v1alpha1.Rollout {
	s.t.Helper()
	var ro *v1alpha1.Rollout
	poll(s.t, timeout, what, func(ctx context.Context) error {
		var err error
		if ro, err = s.rollout(ctx); err != nil {
			return err
		}
		if err := cond(ro); err != nil {
			return fmt.Errorf("%w (message %q)", err, ro.Status.Message)
		}
		return nil
	})
	return ro
}

func phaseIs(p v1alpha1.RolloutPhase) func(*v1alpha1.Rollout) error {
	return func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != p {
			return fmt.Errorf("phase %s, want %s", ro.Status.Phase, p)
		}
		return nil
	}
}

// poll calls cond until it returns nil or the timeout passes, then fails
// with cond's last error.
func poll(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var nodes atomic.Int64

// dial returns grpc-go's xDS client for xds:///checkout.<ns>, reaching the
// fleet through its front with a token of the namespace's ServiceAccount.
func (s *service) dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	return s.dialVia(t, sluice.XDS.Addr())
}

// dialVia is dial through server, with the service's one token file.
func (s *service) dialVia(t testing.TB, server string) *grpc.ClientConn {
	t.Helper()
	b, err := auth.Bootstrap{Server: server, CAFile: caFile, TokenFile: s.tokenFile(t),
		NodeID: fmt.Sprintf("chaos-%d", nodes.Add(1)), Zone: "chaos"}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	conn, err := grpc.NewClient("xds:///checkout."+s.ns, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// tokenFile mints, once, a token of the namespace's ServiceAccount.
func (s *service) tokenFile(t testing.TB) string {
	t.Helper()
	if s.token != "" {
		return s.token
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.token = filepath.Join(t.TempDir(), "token")
	tf := cluster.TokenFile{Client: env.Client(), Path: s.token, Namespace: s.ns, Name: "xds-client", Audience: auth.DefaultAudience}
	if _, err := tf.Write(ctx); err != nil {
		t.Fatalf("xDS client token: %v", err)
	}
	return s.token
}

// load sends RPCs at a steady rate and counts answers by version.
type load struct {
	mu       sync.Mutex
	answers  map[string]int
	last     map[string]time.Time
	failures int
	msgs     map[string]int
	stop     func()
}

// startLoad sends rate RPCs a second over conn until stopped or the test
// ends; the first call must succeed.
func startLoad(t testing.TB, conn *grpc.ClientConn, rate int) *load {
	t.Helper()
	c := testgrpc.NewTestServiceClient(conn)
	first, cancelFirst := context.WithTimeout(context.Background(), time.Minute)
	defer cancelFirst()
	if _, err := c.UnaryCall(first, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("first call through xDS: %v", err)
	}
	l := &load{answers: map[string]int{}, last: map[string]time.Time{}, msgs: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				resp, err := c.UnaryCall(cctx, &testgrpc.SimpleRequest{})
				if ctx.Err() != nil {
					return // stopped: not the data plane's failure
				}
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.failures++
					l.msgs[err.Error()]++
					return
				}
				l.answers[resp.GetServerId()]++
				l.last[resp.GetServerId()] = time.Now()
			}()
		}
	}()
	var once sync.Once
	l.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(l.stop)
	return l
}

// check stops the load and fails t on any failed RPC.
func (l *load) check(t testing.TB) (answers map[string]int) {
	t.Helper()
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures > 0 {
		t.Errorf("%d RPCs failed: %v", l.failures, l.msgs)
	}
	return l.answers
}

// lastAnswer is when version last answered.
func (l *load) lastAnswer(version string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[version]
}
