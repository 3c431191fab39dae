package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

const podTimeout = 60 * time.Second

// callPod makes one gRPC UnaryCall and one HTTP GET / to the pod and returns
// what each reported as its version, failing on the first error.
func callPod(ctx context.Context, pod corev1.Pod) (grpcVersion, httpVersion string, err error) {
	addr := net.JoinHostPort(pod.Status.PodIP, "8080")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return "", "", fmt.Errorf("gRPC UnaryCall to %s (%s): %w", pod.Name, addr, err)
	}
	if resp.GetHostname() != pod.Name {
		return "", "", fmt.Errorf("gRPC hostname = %q, want pod name %q", resp.GetHostname(), pod.Name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", "", err
	}
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("HTTP GET %s: %w", addr, err)
	}
	defer hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("HTTP GET %s: status %d", addr, hr.StatusCode)
	}
	var body struct{ Pod, Version string }
	if err := json.NewDecoder(hr.Body).Decode(&body); err != nil {
		return "", "", fmt.Errorf("HTTP GET %s: decode: %w", addr, err)
	}
	if body.Pod != pod.Name {
		return "", "", fmt.Errorf("HTTP pod = %q, want %q", body.Pod, pod.Name)
	}
	return resp.GetServerId(), body.Version, nil
}

// allServe checks that the deployment's pods are the wanted number, all on
// loopback IPs, and all answer gRPC and HTTP with version.
func allServe(ctx context.Context, ns string, d *appsv1.Deployment, want int, version string) error {
	pods, err := runningPods(ctx, ns, d.Spec.Selector.MatchLabels, want)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if !isLoopback(p.Status.PodIP) {
			return fmt.Errorf("pod %s has IP %s, want a loopback IP", p.Name, p.Status.PodIP)
		}
		g, h, err := callPod(ctx, p)
		if err != nil {
			return err
		}
		if g != version || h != version {
			return fmt.Errorf("pod %s answers gRPC %q / HTTP %q, want %q", p.Name, g, h, version)
		}
	}
	return nil
}

func TestDeploymentPodsServeAndFollowChanges(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	d := deployment(ns, "hello", "registry.example/shop/hello:v1", 2)
	deployments := env.Client().AppsV1().Deployments(ns)
	if _, err := deployments.Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	eventually(t, podTimeout, "2 pods serve v1", func(ctx context.Context) error { return allServe(ctx, ns, d, 2, "v1") })

	t.Run("scale up", func(t *testing.T) {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			scale, err := deployments.GetScale(ctx, d.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			scale.Spec.Replicas = 3
			_, err = deployments.UpdateScale(ctx, d.Name, scale, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatalf("scale: %v", err)
		}
		eventually(t, podTimeout, "3 pods serve v1", func(ctx context.Context) error { return allServe(ctx, ns, d, 3, "v1") })
	})

	t.Run("rolling update", func(t *testing.T) {
		before, err := runningPods(ctx, ns, d.Spec.Selector.MatchLabels, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := deployments.Get(ctx, d.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Template.Spec.Containers[0].Image = "registry.example/shop/hello:v2"
			_, err = deployments.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatalf("update image: %v", err)
		}
		eventually(t, podTimeout, "3 pods serve v2", func(ctx context.Context) error { return allServe(ctx, ns, d, 3, "v2") })
		// The old pods are gone and no longer listening.
		for _, p := range before {
			eventually(t, podTimeout, "old pod "+p.Name+" stops serving", func(ctx context.Context) error {
				if !stillServed(ctx, p) {
					return nil
				}
				return fmt.Errorf("%s still listening on %s", p.Name, p.Status.PodIP)
			})
		}
	})

	t.Run("scale down", func(t *testing.T) {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := deployments.Get(ctx, d.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Replicas = ptr.To[int32](1)
			_, err = deployments.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatalf("scale down: %v", err)
		}
		eventually(t, podTimeout, "1 pod serves v2", func(ctx context.Context) error { return allServe(ctx, ns, d, 1, "v2") })
	})
}

// stillServed reports whether pod p is still served: listed by the pod
// runtime, or answering as p on its IP (kwok may have given the IP to a new
// pod, which then answers with its own name).
func stillServed(ctx context.Context, p corev1.Pod) bool {
	for _, e := range env.PodRuntime().Serving() {
		if e.Namespace == p.Namespace && e.Pod == p.Name {
			return true
		}
	}
	_, _, err := callPod(ctx, p)
	return err == nil
}

func TestErrorRateOneFailsEveryCall(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	d := deployment(ns, "broken", "registry.example/shop/broken:v3", 1, corev1.EnvVar{Name: "SIM_ERROR_RATE", Value: "1"})
	if _, err := env.Client().AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	var pod corev1.Pod
	eventually(t, podTimeout, "broken pod serving", func(ctx context.Context) error {
		pods, err := runningPods(ctx, ns, d.Spec.Selector.MatchLabels, 1)
		if err != nil {
			return err
		}
		for _, e := range env.PodRuntime().Serving() {
			if e.Namespace == ns && e.Pod == pods[0].Name {
				pod = pods[0]
				return nil
			}
		}
		return fmt.Errorf("pod %s not served yet", pods[0].Name)
	})
	addr := net.JoinHostPort(pod.Status.PodIP, "8080")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	const calls = 50
	for i := range calls {
		if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err == nil {
			t.Fatalf("gRPC call %d succeeded; SIM_ERROR_RATE=1 must fail every call", i)
		}
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("HTTP GET %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Fatalf("HTTP GET %d: status %d, want a 5xx", i, resp.StatusCode)
		}
	}
	got := env.PodRuntime().Counts(ns, pod.Name)
	if got.Requests != 2*calls || got.Errors != 2*calls {
		t.Errorf("pod runtime counts = %+v, want %d requests and %d errors", got, 2*calls, 2*calls)
	}
}
