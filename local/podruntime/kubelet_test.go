package podruntime

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReadyOnceListening checks that a pod becomes Ready only when every one
// of its ports listens, as a readiness probe would make it: a port held by
// another process keeps it unready until the runtime binds it.
func TestReadyOnceListening(t *testing.T) {
	c := startCluster(t, Options{RetryMax: 50 * time.Millisecond})
	ip := randomIP()
	squatter, err := net.Listen("tcp", addr(ip, 8080))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	pod := testPod("shop", "checkout-1", ip, container("app", "checkout:v1", nil, 8080, 8081))
	c.create(pod)
	c.waitServing([]Endpoint{{Namespace: "shop", Pod: "checkout-1", IP: ip, Port: 8081, Version: "v1"}})
	if got := c.get(pod); podReady(got) {
		t.Fatalf("pod is Ready while its port 8080 does not listen: %+v", got.Status.Conditions)
	}
	if err := squatter.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	var got *corev1.Pod
	if !poll(func() bool { got = c.get(pod); return podReady(got) }) {
		t.Fatalf("pod never became Ready once its ports listened: %+v", got.Status.Conditions)
	}
	if refused(addr(ip, 8080)) {
		t.Fatalf("pod is Ready but %s refuses connections", addr(ip, 8080))
	}
	for _, s := range got.Status.ContainerStatuses {
		if !s.Ready {
			t.Errorf("container %s of a Ready pod is not ready", s.Name)
		}
	}
}

// TestTerminatingPodDrainsForItsGracePeriod plays the kubelet's side of a pod
// deletion: at the deletionTimestamp the pod refuses new connections and its
// call in flight goes on past Options.DrainTimeout, within the pod's grace
// period; the pod object stays meanwhile, and the runtime removes it once
// the call ended.
func TestTerminatingPodDrainsForItsGracePeriod(t *testing.T) {
	c := startCluster(t, Options{DrainTimeout: 50 * time.Millisecond})
	ip := randomIP()
	pod := testPod("drain", "pod-1", ip, container("app", "checkout:v1", env(EnvLatency, "1h"), 8080))
	c.create(pod)
	c.waitServing([]Endpoint{{Namespace: "drain", Pod: "pod-1", IP: ip, Port: 8080, Version: "v1"}})
	client := dialTest(t, addr(ip, 8080))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		result <- err
	}()
	if !poll(func() bool { return c.runtime.Counts("drain", "pod-1").Requests == 1 }) {
		t.Fatal("the call never reached the pod")
	}
	terminating := c.get(pod)
	now := metav1.Now()
	grace := int64(3600)
	terminating.DeletionTimestamp, terminating.DeletionGracePeriodSeconds = &now, &grace
	c.update(terminating)
	c.waitServing(nil)
	if !refused(addr(ip, 8080)) {
		t.Errorf("%s accepts new connections while the pod terminates", addr(ip, 8080))
	}
	// Ten times DrainTimeout: a call cut at DrainTimeout has ended by now
	// (a slower machine only makes that later, never hides a pass).
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-result:
		t.Fatalf("the call in flight ended within the grace period: %v", err)
	default:
	}
	if _, err := c.client.CoreV1().Pods("drain").Get(context.Background(), "pod-1", metav1.GetOptions{}); err != nil {
		t.Fatalf("the pod object is gone while its call is in flight: %v", err)
	}
	cancel()
	select {
	case err := <-result:
		if status.Code(err) != codes.Canceled {
			t.Errorf("call ended with %v, want it cancelled by its caller", err)
		}
	case <-time.After(pollTimeout):
		t.Fatal("call in flight never ended")
	}
	if !poll(func() bool {
		_, err := c.client.CoreV1().Pods("drain").Get(context.Background(), "pod-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}) {
		t.Fatal("the runtime did not remove the drained pod")
	}
}

func (c *cluster) get(pod *corev1.Pod) *corev1.Pod {
	c.t.Helper()
	got, err := c.client.CoreV1().Pods(pod.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatalf("get pod %s: %v", pod.Name, err)
	}
	return got
}
