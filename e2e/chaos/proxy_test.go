package chaos

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-dev/sluice/xds/translate"
)

// proxyBehaviour says what a raw proxy does with route configurations
// after the first: acknowledge, never answer (hung), or reject (NACK).
type proxyBehaviour int

const (
	proxyHangs proxyBehaviour = iota
	proxyNacks
	proxySlow // acknowledges slowAck after each response
)

// slowAck is how long a slow proxy takes to acknowledge: visible next to a
// healthy proxy's milliseconds, below the stale bound of the fleet (5 s).
const slowAck = 3 * time.Second

// tokenCreds sends a token file's content as the bearer token, over TLS only.
type tokenCreds struct{ path string }

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + strings.TrimSpace(string(b))}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return true }

// rawProxy is an ADS client of one replica, subscribed to the service's
// route configuration, that acknowledges the first one and then behaves as
// told. It runs until the test ends or stop is called.
func (s *service) rawProxy(t testing.TB, addr, node string, b proxyBehaviour) (stop func()) {
	stop, _ = s.rawProxyAcks(t, addr, node, b)
	return stop
}

// rawProxyAcks is rawProxy that also returns when it sent each
// acknowledgement, in order.
func (s *service) rawProxyAcks(t testing.TB, addr, node string, b proxyBehaviour) (stop func(), acks func() []time.Time) {
	t.Helper()
	tc, err := credentials.NewClientTLSFromFile(caFile, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc), grpc.WithPerRPCCredentials(tokenCreds{s.tokenFile(t)}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	route := translate.GRPCListenerName(s.ns, "checkout", 8080)
	req := &discovery.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resource.RouteType, ResourceNames: []string{route}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	done := make(chan struct{})
	var mu sync.Mutex
	var sent []time.Time
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			resp, err := stream.Recv()
			if err != nil {
				if n == 0 {
					first <- err
				}
				return
			}
			ack := &discovery.DiscoveryRequest{Node: req.Node, TypeUrl: resource.RouteType, ResourceNames: req.ResourceNames,
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			switch {
			case n == 0:
			case b == proxyHangs:
				continue
			case b == proxyNacks:
				ack.VersionInfo = req.VersionInfo // the last one it accepted
				ack.ErrorDetail = &status.Status{Code: 3, Message: "chaos: this proxy rejects every route configuration after its first"}
			case b == proxySlow:
				select {
				case <-time.After(slowAck):
				case <-ctx.Done():
					return
				}
			}
			if n == 0 {
				req.VersionInfo = resp.GetVersionInfo()
			}
			if err := stream.Send(ack); err != nil {
				return
			}
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
			if n == 0 {
				first <- nil
			}
		}
	}()
	if err := <-first; err != nil {
		t.Fatalf("raw proxy %s: %v", node, err)
	}
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			conn.Close()
		}
	}
	t.Cleanup(stop)
	acks = func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), sent...)
	}
	return stop, acks
}

// proxyNode names a raw proxy of a test on a replica.
func proxyNode(kind, replica string) string { return fmt.Sprintf("chaos-%s-%s", kind, replica) }
