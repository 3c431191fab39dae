package podruntime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
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

// TestStopsServing checks that every way a pod stops being Running closes its

// listener.

// TestRestartsOnChange checks that changing what a pod serves restarts its

// listeners with the new spec.

// TestIPReuse plays kwok giving a deleted pod's IP to a new pod: the new pod

// is served once the old one is gone, even when the new pod shows up first.

// TestRetriesAddressInUse checks that a port held by another process is

// bound as soon as that process lets go.

// otherEndpoints returns what r serves for pods other than name.

// TestDrain checks that stopping a pod lets a call in flight finish within

// DrainTimeout, and cuts off a call that would outlast it.

// TestRawHTTP1 checks requests a browser or curl would not send but a

// hand-written probe might: a request shorter than the HTTP/2 preface must

// not wait for more bytes, and garbage gets an HTTP error.
