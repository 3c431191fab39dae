package podruntime

import (
	"net/http"
	"testing"

	"github.com/go-logr/logr"
)

// BenchmarkUnaryCall reports the cost of one gRPC UnaryCall to a served pod
// over loopback, client and server in the same process.
func BenchmarkUnaryCall(b *testing.B) {
	c := startCluster(b, Options{Log: logr.Discard()})
	ip := randomIP()
	c.create(testPod("bench", "pod-1", ip, container("app", "checkout:v1", nil, 8080)))
	c.waitServing([]Endpoint{{Namespace: "bench", Pod: "pod-1", IP: ip, Port: 8080, Version: "v1"}})
	client := dialTest(b, addr(ip, 8080))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unary(client); err != nil {
			b.Fatalf("UnaryCall: %v", err)
		}
	}
}

// BenchmarkHTTPGet reports the cost of one HTTP/1.1 GET / to a served pod
// over a kept-alive loopback connection.
func BenchmarkHTTPGet(b *testing.B) {
	c := startCluster(b, Options{Log: logr.Discard()})
	ip := randomIP()
	c.create(testPod("bench", "pod-1", ip, container("app", "checkout:v1", nil, 8080)))
	c.waitServing([]Endpoint{{Namespace: "bench", Pod: "pod-1", IP: ip, Port: 8080, Version: "v1"}})
	client := &http.Client{Timeout: pollTimeout}
	url := "http://" + addr(ip, 8080) + "/"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatalf("GET /: %v", err)
		}
		if _, err := resp.Body.Read(make([]byte, 512)); err != nil && err.Error() != "EOF" {
			b.Fatalf("read GET /: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET / = %d", resp.StatusCode)
		}
	}
}
