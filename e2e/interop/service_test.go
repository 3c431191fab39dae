package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/xds/auth"

	// grpc-go's xDS client sends the bootstrap's token only with this.
	_ "github.com/sluice-dev/sluice/xds/auth/callcreds"
)

// deployment is the name of every test's Deployment and logical service.
const deployment = "checkout"

// delivery is one opted-in Deployment, checkout, in a namespace of its own
// that is opted in to the legacy listener, on the controller under test.
type delivery struct {
	*testkit.Delivery
	t   *testing.T // the Delivery's T, for the clients' starters
	env *controllerEnv
}

var namespaces, nodeIDs atomic.Int64

// deployService creates the namespace and checkout at v1 (3 pods) with the
// annotations, and waits until its Rollout is Idle with the pods running.
func deployService(t *testing.T, e *controllerEnv, prefix string, annotations map[string]string) *delivery {
	t.Helper()
	kube, err := testkit.NewClient(e.cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &delivery{t: t, env: e, Delivery: testkit.Deploy(t, e.cluster.Client(), kube, testkit.DeliverySpec{
		Namespace: fmt.Sprintf("%s-%d-%d", prefix, namespaces.Add(1), time.Now().UnixNano()%100000),
		NamespaceLabels: map[string]string{
			"sluice.dev/team":         "shop",
			auth.LegacyNamespaceLabel: auth.LegacyNamespaceEnabled,
		},
		Name: deployment, Image: "example.com/checkout:v1", Replicas: 3, Annotations: annotations,
		StableWithin: 3 * time.Minute,
	})}
}

// target is the service's proxyless gRPC target.
func (s *delivery) target() string { return "xds:///" + deployment + "." + s.Namespace }

// setPaused pauses or resumes the Rollout as `sluice pause` and `sluice
// resume` do (spec.paused).
func (s *delivery) setPaused(paused bool) {
	s.t.Helper()
	v := "true"
	if !paused {
		v = "null"
	}
	patch := ctrlclient.RawPatch(types.MergePatchType, []byte(`{"spec":{"paused":`+v+`}}`))
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: deployment}}
	if err := s.Kube.Patch(context.Background(), ro, patch); err != nil {
		s.t.Fatalf("pause=%v: %v", paused, err)
	}
}

// canaryGone waits until the canary Deployment is deleted.
func (s *delivery) canaryGone() {
	s.t.Helper()
	testkit.Poll(s.t, 2*time.Minute, "canary deleted", s.CanaryGone)
}

// legacyClient starts a client of generation g on the controller's
// plaintext legacy listener, claiming the service's namespace, and waits
// for its first answered RPC.
func (s *delivery) legacyClient(g generation) client {
	s.t.Helper()
	bs := bootstrap(bootstrapConfig{ServerURI: s.env.LegacyAddr(), Namespace: s.Namespace,
		NodeID: fmt.Sprintf("interop-%s-%d", g.name, nodeIDs.Add(1))})
	return s.firstAnswer(g.start(s.t, bs, s.target()))
}

// authBootstrap is grpc-go's bootstrap for the controller's TLS port (through
// the fleet's front) with a projected-style token of ServiceAccount sa of
// the service's namespace.
func (s *delivery) authBootstrap(sa string) []byte {
	s.t.Helper()
	token := testkit.ClientToken(s.t, s.env.cluster.Client(), s.Namespace, sa, auth.DefaultAudience)
	bs, err := auth.Bootstrap{Server: s.env.fleet.XDS.Addr(), CAFile: s.env.caFile, TokenFile: token,
		NodeID: fmt.Sprintf("interop-auth-%d", nodeIDs.Add(1)), Zone: "interop"}.JSON()
	if err != nil {
		s.t.Fatal(err)
	}
	return bs
}

// authClient starts grpc-go (this module's) authenticated with a token of
// ServiceAccount sa, and waits for its first answered RPC.
func (s *delivery) authClient(sa string) client {
	s.t.Helper()
	return s.firstAnswer(startGo(s.t, s.authBootstrap(sa), s.target()))
}

// firstAnswer polls one RPC at a time until one is answered: a client has
// no configuration when it starts.
func (s *delivery) firstAnswer(c client) client {
	s.t.Helper()
	s.t.Logf("client: %s", c.Name())
	deadline := time.Now().Add(time.Minute)
	for {
		if err := c.Send(1, nil); err != nil {
			s.t.Fatal(err)
		}
		r, err := c.Recv()
		if err != nil {
			s.t.Fatal(err)
		}
		if r.total() == 1 && len(r.Errors) == 0 {
			return c
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no RPC answered within a minute: %v", c.Name(), r.Messages)
		}
	}
}

// clusterInjected reports whether a failure ("<code>: <details>", in any
// client's spelling of the code) is the pod runtime's injected fault
// (SIM_ERROR_RATE).
func clusterInjected(failure string) bool {
	code, details, _ := strings.Cut(failure, ": ")
	return strings.ReplaceAll(strings.ToUpper(code), "_", "") == "UNAVAILABLE" && details == "injected fault"
}

// checkFailures fails t for every failed RPC that is not an injected fault
// and returns how many were injected.
func checkFailures(t *testing.T, name string, r result) (injected int) {
	t.Helper()
	for f, n := range r.Failures {
		if clusterInjected(f) {
			injected += n
			continue
		}
		t.Errorf("%s: %d RPCs failed with %q (first messages: %q)", name, n, f, r.Messages)
	}
	return injected
}

// rpcs sends n RPCs with md and fails t on any failure but an injected one.
func rpcs(t *testing.T, c client, n int, md map[string]string) result {
	t.Helper()
	if err := c.Send(n, md); err != nil {
		t.Fatal(err)
	}
	r, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.total() != n {
		t.Fatalf("%s: %d of %d RPCs reported", c.Name(), r.total(), n)
	}
	checkFailures(t, c.Name(), r)
	return r
}

// onCanary counts the answers of canary pods (<deployment>-canary-…).
func onCanary(r result) int {
	n := 0
	for host, k := range r.Tracks {
		if isCanaryPod(host) {
			n += k
		}
	}
	return n
}

func isCanaryPod(host string) bool {
	return strings.HasPrefix(host, v1alpha1.CanaryName(deployment)+"-")
}

// background keeps a client busy with batches until stopped, as a service
// under steady traffic is.
type background struct {
	mu  sync.Mutex
	sum result
	// seen is when each failure was first and last seen (a batch's end).
	seen map[string][2]time.Time
	stop chan struct{}
	done chan error
}

func startBackground(c client, batch int) *background {
	b := &background{sum: result{Tracks: map[string]int{}, Versions: map[string]int{}, Errors: map[string]int{}, Failures: map[string]int{}},
		seen: map[string][2]time.Time{}, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for {
			select {
			case <-b.stop:
				b.done <- nil
				return
			default:
			}
			if err := c.Send(batch, nil); err != nil {
				b.done <- err
				return
			}
			r, err := c.Recv()
			if err != nil {
				b.done <- err
				return
			}
			now := time.Now()
			b.mu.Lock()
			for f := range r.Failures {
				seen, ok := b.seen[f]
				if !ok {
					seen[0] = now
				}
				seen[1] = now
				b.seen[f] = seen
			}
			for _, m := range []struct{ to, from map[string]int }{{b.sum.Tracks, r.Tracks}, {b.sum.Versions, r.Versions}, {b.sum.Errors, r.Errors}, {b.sum.Failures, r.Failures}} {
				for k, v := range m.from {
					m.to[k] += v
				}
			}
			b.mu.Unlock()
		}
	}()
	return b
}

// finish stops the batches and returns their sum; it logs when each
// failure other than an injected fault was seen.
func (b *background) finish(t *testing.T) result {
	t.Helper()
	close(b.stop)
	if err := <-b.done; err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for f, seen := range b.seen {
		if !clusterInjected(f) {
			t.Logf("%q seen from %s to %s", f, clock(seen[0]), clock(seen[1]))
		}
	}
	return b.sum
}

// clock is a time of day for logs that can be set against the controller's.
func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }

// mark logs an event of the test with its time of day and the service's
// pods then (name, IP, image), so that a failure naming an address can be
// placed.
func (s *delivery) mark(what string) {
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pods []string
	list, err := s.env.cluster.Client().CoreV1().Pods(s.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		pods = append(pods, err.Error())
	} else {
		for _, p := range list.Items {
			state := ""
			if p.DeletionTimestamp != nil {
				state = " deleting"
			}
			pods = append(pods, fmt.Sprintf("%s %s %s%s", p.Name, p.Status.PodIP, p.Spec.Containers[0].Image, state))
		}
	}
	s.t.Logf("%s: %s; pods %q", clock(now), what, pods)
}

// limitCount is the number of proxies status.proxies.limits counts for the
// limit line containing what, 0 without one.
func limitCount(ro *v1alpha1.Rollout, what string) int {
	for _, l := range ro.Status.Proxies.Limits {
		if strings.Contains(l, what) {
			var n int
			if _, err := fmt.Sscanf(l, "%d ", &n); err == nil {
				return n
			}
		}
	}
	return 0
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
