package podruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// pollTimeout bounds every wait for the runtime to catch up with the cluster.
const pollTimeout = 15 * time.Second

// cluster is a fake API server with a running Runtime following it.
type cluster struct {
	t       testing.TB
	client  *fake.Clientset
	runtime *Runtime
}

// startCluster runs a Runtime against a fake clientset and returns once the
// runtime's pod watch is open, so no pod event can be missed.
func startCluster(t testing.TB, opts Options) *cluster {
	t.Helper()
	client := fake.NewClientset()
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("pods", func(action k8stesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace())
		if err != nil {
			return true, nil, fmt.Errorf("open fake pod watch: %w", err)
		}
		once.Do(func() { close(watching) })
		return true, w, nil
	})
	if opts.Log.GetSink() == nil {
		opts.Log = testr.NewWithInterface(t, testr.Options{})
	}
	r := New(client, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-watching:
	case err := <-done:
		t.Fatalf("Run returned before watching pods: %v", err)
	case <-time.After(pollTimeout):
		t.Fatal("the runtime did not start watching pods")
	}
	return &cluster{t: t, client: client, runtime: r}
}

func (c *cluster) create(pod *corev1.Pod) {
	c.t.Helper()
	if _, err := c.client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create pod %s: %v", pod.Name, err)
	}
}

func (c *cluster) update(pod *corev1.Pod) {
	c.t.Helper()
	if _, err := c.client.CoreV1().Pods(pod.Namespace).Update(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("update pod %s: %v", pod.Name, err)
	}
}

func (c *cluster) delete(pod *corev1.Pod) {
	c.t.Helper()
	if err := c.client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		c.t.Fatalf("delete pod %s: %v", pod.Name, err)
	}
}

// waitServing waits until the runtime's Serving list equals want.
func (c *cluster) waitServing(want []Endpoint) {
	c.t.Helper()
	var got []Endpoint
	ok := poll(func() bool {
		got = c.runtime.Serving()
		return cmp.Equal(want, got)
	})
	if !ok {
		c.t.Fatalf("Serving() never matched (-want +got):\n%s", cmp.Diff(want, got))
	}
}

// poll calls cond every 10ms until it holds or pollTimeout passes.
func poll(cond func() bool) bool {
	deadline := time.Now().Add(pollTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// randomIP returns a loopback address unlikely to be used by other tests.
func randomIP() string {
	return fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
}

func addr(ip string, port int32) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// dialTest returns a TestService client for addr.
func dialTest(t testing.TB, address string) testgrpc.TestServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", address, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close grpc client: %v", err)
		}
	})
	return testgrpc.NewTestServiceClient(conn)
}

func unary(client testgrpc.TestServiceClient) (*testgrpc.SimpleResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
	defer cancel()
	return client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
}

// httpGet fetches path from address over HTTP/1.1.
func httpGet(t *testing.T, address, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: pollTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + address + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", address, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read GET %s%s: %v", address, path, err)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("GET %s%s answered over HTTP/%d, want HTTP/1.1", address, path, resp.ProtoMajor)
	}
	return resp.StatusCode, string(body)
}

// refused reports whether nothing listens on address.
func refused(address string) bool {
	conn, err := net.DialTimeout("tcp", address, time.Second)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func TestServesGRPCAndHTTP(t *testing.T) {
	c := startCluster(t, Options{})
	ip := randomIP()
	pod := testPod("shop", "checkout-7d9f", ip,
		container("app", "registry.example/shop/checkout:v2", nil, 8080),
		container("admin", "registry.example/shop/admin", nil, 9090))
	c.create(pod)
	c.waitServing([]Endpoint{
		{Namespace: "shop", Pod: "checkout-7d9f", IP: ip, Port: 8080, Version: "v2"},
		{Namespace: "shop", Pod: "checkout-7d9f", IP: ip, Port: 9090, Version: "latest"},
	})

	ports := map[string]struct {
		port    int32
		image   string
		version string
	}{
		"app port":   {port: 8080, image: "registry.example/shop/checkout:v2", version: "v2"},
		"admin port": {port: 9090, image: "registry.example/shop/admin", version: "latest"},
	}
	for name, tc := range ports {
		t.Run(name, func(t *testing.T) {
			address := addr(ip, tc.port)
			client := dialTest(t, address)
			resp, err := unary(client)
			if err != nil {
				t.Fatalf("UnaryCall: %v", err)
			}
			if resp.GetServerId() != tc.version || resp.GetHostname() != "checkout-7d9f" {
				t.Errorf("UnaryCall = server_id %q hostname %q, want %q %q", resp.GetServerId(), resp.GetHostname(), tc.version, "checkout-7d9f")
			}
			if _, err := client.EmptyCall(context.Background(), &testgrpc.Empty{}); err != nil {
				t.Errorf("EmptyCall: %v", err)
			}
			stream, err := client.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("StreamingOutputCall error = %v, want Unimplemented", err)
			}

			code, body := httpGet(t, address, "/")
			if code != http.StatusOK {
				t.Fatalf("GET / = %d %q, want 200", code, body)
			}
			var got Identity
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("GET / body %q: %v", body, err)
			}
			want := Identity{Pod: "checkout-7d9f", Namespace: "shop", Image: tc.image, Version: tc.version}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("GET / mismatch (-want +got):\n%s", diff)
			}
			if code, body := httpGet(t, address, "/healthz"); code != http.StatusNotFound {
				t.Errorf("GET /healthz = %d %q, want 404", code, body)
			}
		})
	}
	// Per port: UnaryCall, EmptyCall, StreamingOutputCall, GET /, GET /healthz.
	if got, want := c.runtime.Counts("shop", "checkout-7d9f"), (Counts{Requests: 10}); got != want {
		t.Errorf("Counts = %+v, want %+v", got, want)
	}
	if got := c.runtime.Counts("shop", "nobody"); got != (Counts{}) {
		t.Errorf("Counts of an unknown pod = %+v, want zero", got)
	}
}

func TestFaultInjection(t *testing.T) {
	const calls = 20
	valueFrom := corev1.EnvVar{Name: EnvErrorRate, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}
	tests := map[string]struct {
		env        []corev1.EnvVar
		wantErrors int64
		wantCode   codes.Code // of the failing calls
		wantMsg    string     // substring of the failing calls' message
		wantHTTP   int        // status of a GET / after the gRPC calls
	}{
		"no faults": {wantHTTP: http.StatusOK},
		"rate 0":    {env: env(EnvErrorRate, "0"), wantHTTP: http.StatusOK},
		"rate 1":    {env: env(EnvErrorRate, "1"), wantErrors: calls, wantCode: codes.Unavailable, wantMsg: "injected fault", wantHTTP: http.StatusServiceUnavailable},
		// Call 21, the GET, is not among the floor(21×0.25) = 5 that fail.
		"rate 0.25":         {env: env(EnvErrorRate, "0.25"), wantErrors: calls / 4, wantCode: codes.Unavailable, wantMsg: "injected fault", wantHTTP: http.StatusOK},
		"valueFrom ignored": {env: []corev1.EnvVar{valueFrom}, wantHTTP: http.StatusOK},
		"malformed rate": {env: env(EnvErrorRate, "5%"), wantErrors: calls, wantCode: codes.FailedPrecondition,
			wantMsg: `SIM_ERROR_RATE="5%"`, wantHTTP: http.StatusInternalServerError},
		"malformed latency": {env: env(EnvLatency, "fast"), wantErrors: calls, wantCode: codes.FailedPrecondition,
			wantMsg: `SIM_LATENCY="fast"`, wantHTTP: http.StatusInternalServerError},
	}
	c := startCluster(t, Options{})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ip := randomIP()
			pod := testPod("faults", "pod-"+strconv.Itoa(rand.IntN(1e9)), ip, container("app", "checkout:v3", tc.env, 8080))
			c.create(pod)
			c.waitServing(append(otherEndpoints(c.runtime, pod.Name), Endpoint{Namespace: "faults", Pod: pod.Name, IP: ip, Port: 8080, Version: "v3"}))
			client := dialTest(t, addr(ip, 8080))
			var failed int64
			for range calls {
				resp, err := unary(client)
				if err == nil {
					if resp.GetServerId() != "v3" {
						t.Errorf("UnaryCall server_id = %q, want v3", resp.GetServerId())
					}
					continue
				}
				failed++
				st := status.Convert(err)
				if st.Code() != tc.wantCode || !containsAll(st.Message(), tc.wantMsg) {
					t.Errorf("UnaryCall failed with %v, want code %v and a message containing %q", err, tc.wantCode, tc.wantMsg)
				}
			}
			if failed != tc.wantErrors {
				t.Errorf("%d of %d calls failed, want %d", failed, calls, tc.wantErrors)
			}
			code, body := httpGet(t, addr(ip, 8080), "/")
			if code != tc.wantHTTP || (code != http.StatusOK && !containsAll(body, tc.wantMsg)) {
				t.Errorf("GET / = %d %q, want %d containing %q", code, body, tc.wantHTTP, tc.wantMsg)
			}
			wantCounts := Counts{Requests: calls + 1, Errors: tc.wantErrors}
			if code != http.StatusOK {
				wantCounts.Errors++
			}
			if got := c.runtime.Counts("faults", pod.Name); got != wantCounts {
				t.Errorf("Counts = %+v, want %+v", got, wantCounts)
			}
			c.delete(pod)
			if !poll(func() bool { return refused(addr(ip, 8080)) }) {
				t.Errorf("%s still accepts connections after the pod was deleted", addr(ip, 8080))
			}
		})
	}
}

func TestLatency(t *testing.T) {
	const latency = 150 * time.Millisecond
	c := startCluster(t, Options{})
	ip := randomIP()
	pod := testPod("slow", "slow-1", ip, container("app", "checkout:v1", env(EnvLatency, latency.String()), 8080))
	c.create(pod)
	c.waitServing([]Endpoint{{Namespace: "slow", Pod: "slow-1", IP: ip, Port: 8080, Version: "v1"}})
	client := dialTest(t, addr(ip, 8080))

	start := time.Now()
	if _, err := unary(client); err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	if took := time.Since(start); took < latency {
		t.Errorf("UnaryCall took %s, want at least %s", took, latency)
	}
	start = time.Now()
	if code, body := httpGet(t, addr(ip, 8080), "/"); code != http.StatusOK {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if took := time.Since(start); took < latency {
		t.Errorf("GET / took %s, want at least %s", took, latency)
	}
}

// TestStopsServing checks that every way a pod stops being Running closes its
// listener.
func TestStopsServing(t *testing.T) {
	now := metav1.Now()
	tests := map[string]func(c *cluster, pod *corev1.Pod){
		"deleted":     func(c *cluster, pod *corev1.Pod) { c.delete(pod) },
		"terminating": func(c *cluster, pod *corev1.Pod) { pod.DeletionTimestamp = &now; c.update(pod) },
		"succeeded":   func(c *cluster, pod *corev1.Pod) { pod.Status.Phase = corev1.PodSucceeded; c.update(pod) },
		"lost its IP": func(c *cluster, pod *corev1.Pod) { pod.Status.PodIP = ""; c.update(pod) },
		"host network": func(c *cluster, pod *corev1.Pod) {
			pod.Spec.HostNetwork = true
			c.update(pod)
		},
	}
	c := startCluster(t, Options{})
	for name, stop := range tests {
		t.Run(name, func(t *testing.T) {
			ip := randomIP()
			pod := testPod("stop", "pod-"+strconv.Itoa(rand.IntN(1e9)), ip, container("app", "checkout:v1", nil, 8080))
			c.create(pod)
			c.waitServing([]Endpoint{{Namespace: "stop", Pod: pod.Name, IP: ip, Port: 8080, Version: "v1"}})
			client := dialTest(t, addr(ip, 8080))
			if _, err := unary(client); err != nil {
				t.Fatalf("UnaryCall before stopping: %v", err)
			}
			stop(c, pod)
			c.waitServing(nil)
			if !refused(addr(ip, 8080)) {
				t.Fatalf("%s accepts connections after the pod stopped", addr(ip, 8080))
			}
		})
	}
}

// TestRestartsOnChange checks that changing what a pod serves restarts its
// listeners with the new spec.
func TestRestartsOnChange(t *testing.T) {
	newIP := randomIP()
	tests := map[string]struct {
		change func(*corev1.Pod)
		// check polls one call on the (new) address until it shows the change.
		check func(resp *testgrpc.SimpleResponse, err error) bool
		ip    string // the new IP, when it changes
	}{
		"image": {
			change: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "checkout:v2" },
			check:  func(resp *testgrpc.SimpleResponse, err error) bool { return err == nil && resp.GetServerId() == "v2" },
		},
		"env": {
			change: func(p *corev1.Pod) { p.Spec.Containers[0].Env = env(EnvErrorRate, "1") },
			check: func(_ *testgrpc.SimpleResponse, err error) bool {
				return status.Code(err) == codes.Unavailable && status.Convert(err).Message() == "injected fault"
			},
		},
		"IP": {
			change: func(p *corev1.Pod) { p.Status.PodIP = newIP },
			check:  func(resp *testgrpc.SimpleResponse, err error) bool { return err == nil && resp.GetServerId() == "v1" },
			ip:     newIP,
		},
	}
	c := startCluster(t, Options{})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ip := randomIP()
			pod := testPod("shop", "pod-"+strconv.Itoa(rand.IntN(1e9)), ip, container("app", "checkout:v1", nil, 8080))
			c.create(pod)
			c.waitServing([]Endpoint{{Namespace: "shop", Pod: pod.Name, IP: ip, Port: 8080, Version: "v1"}})
			client := dialTest(t, addr(ip, 8080))
			if resp, err := unary(client); err != nil || resp.GetServerId() != "v1" {
				t.Fatalf("UnaryCall = %v, %v; want server_id v1", resp, err)
			}

			tc.change(pod)
			c.update(pod)
			if tc.ip != "" {
				if !poll(func() bool { return refused(addr(ip, 8080)) }) {
					t.Fatalf("old address %s still accepts connections", addr(ip, 8080))
				}
				client = dialTest(t, addr(tc.ip, 8080))
			}
			// The same client reconnects after the old listener's GOAWAY.
			var last string
			if !poll(func() bool {
				resp, err := unary(client)
				last = fmt.Sprint(resp.GetServerId(), " ", err)
				return tc.check(resp, err)
			}) {
				t.Fatalf("calls never showed the change; last answer %s", last)
			}
			c.delete(pod)
			c.waitServing(nil)
		})
	}
}

// TestIPReuse plays kwok giving a deleted pod's IP to a new pod: the new pod
// is served once the old one is gone, even when the new pod shows up first.
func TestIPReuse(t *testing.T) {
	c := startCluster(t, Options{})
	ip := randomIP()
	old := testPod("shop", "checkout-old", ip, container("app", "checkout:v1", nil, 8080))
	c.create(old)
	c.waitServing([]Endpoint{{Namespace: "shop", Pod: "checkout-old", IP: ip, Port: 8080, Version: "v1"}})

	replacement := testPod("shop", "checkout-new", ip, container("app", "checkout:v2", nil, 8080))
	c.create(replacement)
	c.delete(old)
	c.waitServing([]Endpoint{{Namespace: "shop", Pod: "checkout-new", IP: ip, Port: 8080, Version: "v2"}})
	resp, err := unary(dialTest(t, addr(ip, 8080)))
	if err != nil || resp.GetHostname() != "checkout-new" {
		t.Fatalf("UnaryCall = %v, %v; want hostname checkout-new", resp, err)
	}
}

// TestRetriesAddressInUse checks that a port held by another process is
// bound as soon as that process lets go.
func TestRetriesAddressInUse(t *testing.T) {
	c := startCluster(t, Options{RetryMax: 50 * time.Millisecond})
	ip := randomIP()
	squatter, err := net.Listen("tcp", addr(ip, 8080))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	pod := testPod("shop", "checkout-1", ip, container("app", "checkout:v1", nil, 8080, 8081))
	c.create(pod)
	// The free port is served while the held one is retried.
	c.waitServing([]Endpoint{{Namespace: "shop", Pod: "checkout-1", IP: ip, Port: 8081, Version: "v1"}})
	if err := squatter.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	c.waitServing([]Endpoint{
		{Namespace: "shop", Pod: "checkout-1", IP: ip, Port: 8080, Version: "v1"},
		{Namespace: "shop", Pod: "checkout-1", IP: ip, Port: 8081, Version: "v1"},
	})
}

func TestRunClosesListenersOnReturn(t *testing.T) {
	client := fake.NewClientset()
	ip := randomIP()
	pod := testPod("shop", "checkout-1", ip, container("app", "checkout:v1", nil, 8080))
	if _, err := client.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	r := New(client, Options{Log: testr.New(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if !poll(func() bool { return len(r.Serving()) == 1 }) {
		cancel()
		t.Fatalf("pod never served: %v", r.Serving())
	}
	if resp, err := unary(dialTest(t, addr(ip, 8080))); err != nil || resp.GetServerId() != "v1" {
		t.Fatalf("UnaryCall = %v, %v", resp, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !refused(addr(ip, 8080)) {
		t.Errorf("%s still accepts connections after Run returned", addr(ip, 8080))
	}
	if got := r.Serving(); len(got) != 0 {
		t.Errorf("Serving() after Run returned = %v, want none", got)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Error("second Run succeeded, want an error")
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	tests := map[string]struct {
		client *fake.Clientset
		opts   Options
	}{
		"negative drain": {client: fake.NewClientset(), opts: Options{DrainTimeout: -time.Second}},
		"tiny retry":     {client: fake.NewClientset(), opts: Options{RetryMax: time.Millisecond}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := New(tc.client, tc.opts).Run(context.Background()); err == nil {
				t.Fatal("Run succeeded, want an error")
			}
		})
	}
	if err := New(nil, Options{}).Run(context.Background()); err == nil {
		t.Fatal("Run without a client succeeded, want an error")
	}
}

// otherEndpoints returns what r serves for pods other than name.
func otherEndpoints(r *Runtime, name string) []Endpoint {
	var out []Endpoint
	for _, e := range r.Serving() {
		if e.Pod != name {
			out = append(out, e)
		}
	}
	return out
}

func containsAll(s, sub string) bool {
	return sub == "" || (len(s) >= len(sub) && strings.Contains(s, sub))
}

// TestDrain checks that stopping a pod lets a call in flight finish within
// DrainTimeout, and cuts off a call that would outlast it.
func TestDrain(t *testing.T) {
	tests := map[string]struct {
		drain    time.Duration
		latency  time.Duration
		wantCode codes.Code
	}{
		"call finishes within the drain timeout":   {drain: time.Minute, latency: 300 * time.Millisecond, wantCode: codes.OK},
		"call outlasting the drain timeout is cut": {drain: 50 * time.Millisecond, latency: time.Hour, wantCode: codes.Unavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := startCluster(t, Options{DrainTimeout: tc.drain})
			ip := randomIP()
			pod := testPod("drain", "pod-1", ip, container("app", "checkout:v1", env(EnvLatency, tc.latency.String()), 8080))
			c.create(pod)
			c.waitServing([]Endpoint{{Namespace: "drain", Pod: "pod-1", IP: ip, Port: 8080, Version: "v1"}})
			client := dialTest(t, addr(ip, 8080))
			result := make(chan error, 1)
			go func() {
				_, err := unary(client)
				result <- err
			}()
			if !poll(func() bool { return c.runtime.Counts("drain", "pod-1").Requests == 1 }) {
				t.Fatal("the call never reached the pod")
			}
			c.delete(pod)
			c.waitServing(nil)
			if !refused(addr(ip, 8080)) {
				t.Errorf("%s accepts new connections while draining", addr(ip, 8080))
			}
			select {
			case err := <-result:
				if status.Code(err) != tc.wantCode {
					t.Errorf("call in flight ended with %v, want code %v", err, tc.wantCode)
				}
			case <-time.After(pollTimeout):
				t.Fatal("call in flight never ended")
			}
		})
	}
}

// TestRawHTTP1 checks requests a browser or curl would not send but a
// hand-written probe might: a request shorter than the HTTP/2 preface must
// not wait for more bytes, and garbage gets an HTTP error.
func TestRawHTTP1(t *testing.T) {
	c := startCluster(t, Options{})
	ip := randomIP()
	c.create(testPod("raw", "pod-1", ip, container("app", "checkout:v1", nil, 8080)))
	c.waitServing([]Endpoint{{Namespace: "raw", Pod: "pod-1", IP: ip, Port: 8080, Version: "v1"}})
	tests := map[string]struct {
		request    string
		wantStatus string
	}{
		"short HTTP/1.0 request":    {request: "GET / HTTP/1.0\r\n\r\n", wantStatus: "HTTP/1.0 200 OK"},
		"request starting like PRI": {request: "PRI /x HTTP/1.0\r\n\r\n", wantStatus: "HTTP/1.0 404 Not Found"},
		"POST to /":                 {request: "POST / HTTP/1.0\r\n\r\n", wantStatus: "HTTP/1.0 405 Method Not Allowed"},
		"garbage":                   {request: "\x00\x01hello\r\n\r\n", wantStatus: "HTTP/1.1 400 Bad Request"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr(ip, 8080), pollTimeout)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(pollTimeout)); err != nil {
				t.Fatalf("set deadline: %v", err)
			}
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatalf("write: %v", err)
			}
			reply, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("read: %v (got %q)", err, reply)
			}
			if !strings.HasPrefix(string(reply), tc.wantStatus+"\r\n") {
				t.Errorf("reply = %q, want status line %q", reply, tc.wantStatus)
			}
		})
	}
}
