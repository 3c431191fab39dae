package podruntime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

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

func otherEndpoints(r *Runtime, name string) []Endpoint {
	var out []Endpoint
	for _, e := range r.Serving() {
		if e.Pod != name {
			out = append(out, e)
		}
	}
	return out
}

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
