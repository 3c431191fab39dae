package traffic

import (
	"context"
	"net"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-dev/sluice/xds/server"
)

// fakeSource stands in for the informers: tests set the objects and say
// whether the change is urgent.
type fakeSource struct {
	mu      sync.Mutex
	objs    Objects
	lists   int
	trigger func(bool)
	started chan struct{}
}

func newFakeSource(objs Objects) *fakeSource {
	return &fakeSource{objs: objs, started: make(chan struct{})}
}

func (f *fakeSource) run(_ context.Context, trigger func(bool)) error {
	f.mu.Lock()
	f.trigger = trigger
	f.mu.Unlock()
	close(f.started)
	return nil
}

func (f *fakeSource) list(context.Context) (Objects, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return f.objs, nil
}

func (f *fakeSource) set(objs Objects, urgent bool) {
	f.mu.Lock()
	f.objs = objs
	trigger := f.trigger
	f.mu.Unlock()
	trigger(urgent)
}

// xdsServer starts an xDS server on a loopback port.
func xdsServer(tb testing.TB, log logr.Logger) (*server.Server, string) {
	tb.Helper()
	srv := server.New(server.Options{Logger: log, Registerer: prometheus.NewRegistry()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer(grpc.WaitForHandlers(true))
	srv.Register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	tb.Cleanup(g.Stop)
	return srv, lis.Addr().String()
}

// startController runs a controller on a fake source until the test ends.
func startController(tb testing.TB, srv *server.Server, src *fakeSource, opts Options) *Controller {
	tb.Helper()
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	c, err := newController(srv, src, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("controller: %v", err)
		}
	})
	<-src.started
	return c
}

// rawProxy is a raw state-of-the-world ADS stream subscribed to one type's
// named resources, answering every response: an ACK, or a NACK when nack
// returns a message.
type rawProxy struct {
	stream grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	done   chan error
}

// dialADS opens a connection to addr; streams share it.
func dialADS(tb testing.TB, addr string) discovery.AggregatedDiscoveryServiceClient {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return discovery.NewAggregatedDiscoveryServiceClient(conn)
}

func startProxy(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, node, typeURL string, names []string, nack func(*discovery.DiscoveryResponse) string) (*rawProxy, error) {
	st, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	n := &corev3.Node{Id: node, UserAgentName: "raw-ads-test"}
	if err := st.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: typeURL, ResourceNames: names}); err != nil {
		return nil, err
	}
	p := &rawProxy{stream: st, done: make(chan error, 1)}
	go func() {
		var acked string
		for {
			resp, err := st.Recv()
			if err != nil {
				p.done <- err
				return
			}
			req := &discovery.DiscoveryRequest{Node: n, TypeUrl: typeURL, ResourceNames: names, ResponseNonce: resp.GetNonce()}
			if msg := nack(resp); msg != "" {
				req.VersionInfo = acked
				req.ErrorDetail = &statuspb.Status{Code: 3, Message: msg}
			} else {
				acked = resp.GetVersionInfo()
				req.VersionInfo = acked
			}
			if err := st.Send(req); err != nil {
				p.done <- err
				return
			}
		}
	}()
	return p, nil
}

func ackAll(*discovery.DiscoveryResponse) string { return "" }

// adsClient is the generated ADS client interface.
type adsClient = discovery.AggregatedDiscoveryServiceClient
