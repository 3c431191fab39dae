package testkit

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
)

// TokenCreds sends a token file's content, read at each call, as the
// bearer token, over TLS only.
type TokenCreds struct{ Path string }

var _ credentials.PerRPCCredentials = TokenCreds{}

// GetRequestMetadata returns the authorization header.
func (c TokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(c.Path)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + strings.TrimSpace(string(b))}, nil
}

// RequireTransportSecurity is true: a token never leaves in clear.
func (TokenCreds) RequireTransportSecurity() bool { return true }

// DialXDS is a client connection to the xDS server at addr over TLS
// (verified with the CA bundle at caFile), sending the token at tokenFile;
// it is closed when the test ends.
func DialXDS(t testing.TB, addr, caFile, tokenFile string) *grpc.ClientConn {
	t.Helper()
	tc, err := credentials.NewClientTLSFromFile(caFile, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc), grpc.WithPerRPCCredentials(TokenCreds{tokenFile}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// NackCode is the status code of a RouteProxy's rejections
// (INVALID_ARGUMENT).
const NackCode = 3

// Reply is what a RouteProxy does with one response.
type Reply struct {
	// Hang sends nothing back: the response is never answered.
	Hang bool
	// Nack, when not empty, rejects the response with this message,
	// presenting the version last acknowledged; else it is acknowledged.
	Nack string
	// After delays the answer (the proxy stops waiting when it is stopped).
	After time.Duration
}

// RouteProxy is a raw ADS client, as a proxy's, subscribed to one route
// configuration on one connection, that answers each response as its
// script says.
type RouteProxy struct {
	first chan error
	done  chan struct{}
	stop  func()

	mu   sync.Mutex
	sent []time.Time
}

// StartRouteProxy opens an ADS stream on conn as node, subscribes to the
// route configuration route, and answers the n-th response (from 0) as
// answer says. It runs until Stop is called, the stream breaks, or the test
// ends.
func StartRouteProxy(t testing.TB, conn *grpc.ClientConn, node, route string, answer func(n int, resp *discovery.DiscoveryResponse) Reply) *RouteProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	id := &corev3.Node{Id: node}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: id, TypeUrl: resource.RouteType, ResourceNames: []string{route}}); err != nil {
		cancel()
		t.Fatal(err)
	}
	p := &RouteProxy{first: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		acked := "" // the version last acknowledged
		for n := 0; ; n++ {
			resp, err := stream.Recv()
			if err != nil {
				if n == 0 {
					p.first <- err
				}
				return
			}
			r := answer(n, resp)
			if r.Hang {
				continue
			}
			if r.After > 0 {
				select {
				case <-time.After(r.After):
				case <-ctx.Done():
					return
				}
			}
			req := &discovery.DiscoveryRequest{Node: id, TypeUrl: resource.RouteType, ResourceNames: []string{route}, ResponseNonce: resp.GetNonce()}
			if r.Nack != "" {
				req.VersionInfo = acked
				req.ErrorDetail = &status.Status{Code: NackCode, Message: r.Nack}
			} else {
				acked = resp.GetVersionInfo()
				req.VersionInfo = acked
			}
			if err := stream.Send(req); err != nil {
				if n == 0 {
					p.first <- fmt.Errorf("answer the first response: %w", err)
				}
				return
			}
			p.mu.Lock()
			p.sent = append(p.sent, time.Now())
			p.mu.Unlock()
			if n == 0 {
				p.first <- nil
			}
		}
	}()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			<-p.done
		})
	}
	t.Cleanup(p.stop)
	return p
}

// WaitFirst waits until the proxy received its first response and sent
// its answer, and fails t if the stream broke before. It must not be used
// with a script that hangs on the first response.
func (p *RouteProxy) WaitFirst(t testing.TB, node string) {
	t.Helper()
	if err := <-p.first; err != nil {
		t.Fatalf("raw proxy %s: %v", node, err)
	}
}

// Stop closes the stream and waits for the proxy to end; it may be called
// more than once.
func (p *RouteProxy) Stop() { p.stop() }

// Answers is when the proxy sent each answer (ACK or NACK), in order.
func (p *RouteProxy) Answers() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.sent...)
}

// SubscribeRoutes keeps node subscribed to the route configuration route
// on client until ctx ends, as a proxy does: it acknowledges every response
// and, when a stream breaks, opens another (waiting for the connection to be
// ready). With resume, a new stream presents the version last acknowledged,
// as grpc-go and Envoy do; else it starts afresh. onResponse is called with
// each response before it is acknowledged; reopened after each stream that
// broke while ctx was live.
func SubscribeRoutes(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, node *corev3.Node, route string, resume bool,
	onResponse func(*discovery.DiscoveryResponse), reopened func()) {
	acked := ""
	for ctx.Err() == nil {
		stream, err := client.StreamAggregatedResources(ctx, grpc.WaitForReady(true))
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		req := &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.RouteType, ResourceNames: []string{route}}
		if resume {
			req.VersionInfo = acked
		}
		for err == nil {
			if err = stream.Send(req); err != nil {
				break
			}
			var resp *discovery.DiscoveryResponse
			if resp, err = stream.Recv(); err != nil {
				break
			}
			onResponse(resp)
			acked = resp.GetVersionInfo()
			req = &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.RouteType, ResourceNames: req.ResourceNames,
				VersionInfo: acked, ResponseNonce: resp.GetNonce()}
		}
		if ctx.Err() == nil {
			reopened()
		}
	}
}
