package podruntime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
)

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
		"rate 0.25 even": {env: env(EnvErrorRate, "0.25", EnvErrorMode, "even"), wantErrors: calls / 4, wantCode: codes.Unavailable, wantMsg: "injected fault", wantHTTP: http.StatusOK},
		// Random draws with a fixed seed fail the calls that Behavior.Fails names, the GET (call 21) included.
		"rate 0.25 seeded": {env: env(EnvErrorRate, "0.25", EnvSeed, "3"), wantErrors: seededFailures(0.25, 3, calls),
			wantCode: codes.Unavailable, wantMsg: "injected fault", wantHTTP: seededHTTP(0.25, 3, calls+1)},
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

// seededFailures is how many of the first calls fail at rate with SIM_SEED=seed.
func seededFailures(rate float64, seed uint64, calls int) int64 {
	b := Behavior{ErrorRate: rate, Seed: seed, Seeded: true}
	var n int64
	for i := 1; i <= calls; i++ {
		if b.Fails(uint64(i)) {
			n++
		}
	}
	return n
}

// seededHTTP is the status of call n, a GET /, at rate with SIM_SEED=seed.
func seededHTTP(rate float64, seed uint64, n int) int {
	if (Behavior{ErrorRate: rate, Seed: seed, Seeded: true}).Fails(uint64(n)) {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
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

func containsAll(s, sub string) bool {
	return sub == "" || (len(s) >= len(sub) && strings.Contains(s, sub))
}

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

// TestCountsUnderConcurrentLoad checks that the runtime's counters agree
// with what concurrent clients saw, which is what load-report tests compare.
func TestCountsUnderConcurrentLoad(t *testing.T) {
	const (
		pods       = 3
		workers    = 8
		perWorker  = 25
		errorRate  = "0.1"
		wantErrors = workers * perWorker / 10
	)
	c := startCluster(t, Options{})
	var want []Endpoint
	ips := map[string]string{}
	for i := range pods {
		name := fmt.Sprintf("load-%d", i)
		ips[name] = randomIP()
		c.create(testPod("load", name, ips[name], container("app", "checkout:v1", env(EnvErrorRate, errorRate, EnvErrorMode, "even"), 8080)))
		want = append(want, Endpoint{Namespace: "load", Pod: name, IP: ips[name], Port: 8080, Version: "v1"})
	}
	c.waitServing(want)
	for name, ip := range ips {
		client := dialTest(t, addr(ip, 8080))
		var failed atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range perWorker {
					if _, err := unary(client); err != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		got := c.runtime.Counts("load", name)
		if want := (Counts{Requests: workers * perWorker, Errors: wantErrors}); got != want {
			t.Errorf("pod %s: Counts = %+v, want %+v", name, got, want)
		}
		if failed.Load() != got.Errors {
			t.Errorf("pod %s: clients saw %d failures, the pod counted %d", name, failed.Load(), got.Errors)
		}
	}
}
