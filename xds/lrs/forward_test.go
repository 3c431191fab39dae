package lrs

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sluice-dev/sluice/xds/auth"
)

func TestForwardMergesIntoLeader(t *testing.T) {
	leader, replica := NewAggregator(), NewAggregator()
	conn := servePeer(t, func(g *grpc.Server) { RegisterForwarding(g, leader) })
	leader.add(1, anyone, canary, Totals{Requests: 10, Errors: 1})
	replica.add(1, anyone, canary, Totals{Requests: 30, Errors: 3, Issued: 31, InFlight: 1})
	replica.add(1, anyone, stable, Totals{Requests: 500, Issued: 500})

	f := &Forwarder{Aggregator: replica, Conn: conn, Source: "replica-b-1"}
	ctx := context.Background()
	for range 2 { // a repeated forward must not double count
		if err := f.Forward(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := map[Key]Totals{
		canary: {Requests: 40, Errors: 4, Issued: 31, InFlight: 1},
		stable: {Requests: 500, Issued: 500},
	}
	if diff := cmp.Diff(want, leader.Totals()); diff != "" {
		t.Fatalf("leader totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[Key]Totals{canary: {Requests: 10, Errors: 1}}, leader.Local()); diff != "" {
		t.Fatalf("leader local totals changed (-want +got):\n%s", diff)
	}

	// The runnable keeps the leader up to date and stops with its context.
	replica.add(1, anyone, canary, Totals{Requests: 5, Errors: 5, Issued: 5})
	runCtx, cancel := context.WithCancel(ctx)
	f.Interval = 10 * time.Millisecond
	f.Logger = testr.New(t)
	done := make(chan error, 1)
	go func() { done <- f.Start(runCtx) }()
	eventually(t, "leader sees the new canary errors", func() bool { return leader.Totals()[canary].Errors == 9 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its context ended")
	}
}

func TestForwardRejectsMalformed(t *testing.T) {
	leader := NewAggregator()
	conn := servePeer(t, func(g *grpc.Server) { RegisterForwarding(g, leader) })
	stats := func(service, namespace string, ls ...*endpointv3.UpstreamLocalityStats) *endpointv3.ClusterStats {
		return &endpointv3.ClusterStats{ClusterName: service, ClusterServiceName: namespace, UpstreamLocalityStats: ls}
	}
	cases := map[string]struct {
		req  *lrsv3.LoadStatsRequest
		want string
	}{
		"no source": {
			req:  &lrsv3.LoadStatsRequest{},
			want: "node.id",
		},
		"no namespace": {
			req:  &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "b"}, ClusterStats: []*endpointv3.ClusterStats{stats("checkout", "", locality("canary", 1, 0, 0))}},
			want: "cluster_service_name (namespace)",
		},
		"no track": {
			req:  &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "b"}, ClusterStats: []*endpointv3.ClusterStats{stats("checkout", "shop", locality("", 1, 0, 0))}},
			want: "is not a track",
		},
		"two tracks in one key": {
			req: &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "b"}, ClusterStats: []*endpointv3.ClusterStats{
				stats("checkout", "shop", from(anyone, locality("canary", 1, 0, 0)), from(anyone, locality("stable", 1, 0, 0))),
			}},
			want: "differs from the entry's first",
		},
		"no origin class": {
			req:  &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "b"}, ClusterStats: []*endpointv3.ClusterStats{stats("checkout", "shop", locality("canary", 1, 0, 0))}},
			want: "want an origin class",
		},
		"duplicate origin": {
			req: &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "b"}, ClusterStats: []*endpointv3.ClusterStats{
				stats("checkout", "shop", from(anyone, locality("canary", 1, 0, 0)), from(anyone, locality("canary", 1, 0, 0))),
			}},
			want: "duplicate origin unidentified",
		},
		"duplicate key": {
			req: &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "b"}, ClusterStats: []*endpointv3.ClusterStats{
				stats("checkout", "shop", from(anyone, locality("canary", 1, 0, 0))), stats("checkout", "shop", from(anyone, locality("canary", 1, 0, 0))),
			}},
			want: "duplicate key shop/checkout/canary",
		},
		"counter overflow": {
			req: &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: "b"}, ClusterStats: []*endpointv3.ClusterStats{
				stats("checkout", "shop", from(anyone, locality("canary", math.MaxUint64, 1, 0))),
			}},
			want: "overflow a counter",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := conn.Invoke(context.Background(), ForwardMethod, tc.req, &emptypb.Empty{})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Forward error = %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
	if len(leader.Totals()) != 0 {
		t.Fatalf("malformed forwards changed the leader: %v", leader.Totals())
	}
}

func TestForwarderNeedsItsParts(t *testing.T) {
	cases := map[string]struct {
		f    Forwarder
		want string
	}{
		"no aggregator": {f: Forwarder{Source: "b"}, want: "Aggregator"},
		"no conn":       {f: Forwarder{Aggregator: NewAggregator(), Source: "b"}, want: "Conn"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := tc.f.Start(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start error = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// from sets the origin of a forwarded locality entry.
func from(o Origin, ls *endpointv3.UpstreamLocalityStats) *endpointv3.UpstreamLocalityStats {
	ls.Locality.Region, ls.Locality.Zone = string(o.Class), o.Identity
	return ls
}

// servePeer is serve with every call acting as a proven replica, as the peer
// listener's callers do.
func servePeer(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	return serveWith(t, register, grpc.UnaryInterceptor(asPeer))
}

func asPeer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(auth.NewContext(ctx, auth.Identity{Method: auth.MethodPeer, Name: "sluice"}), req)
}

// TestForwardNeedsAPeer checks that a caller that did not prove to be a
// replica cannot merge load, even on a listener that serves Forward.
func TestForwardNeedsAPeer(t *testing.T) {
	leader := NewAggregator()
	conn := serve(t, func(g *grpc.Server) { RegisterForwarding(g, leader) })
	req := encodeForward("forger", map[Key]ByOrigin{canary: {anyone: {Requests: 1000, Errors: 1000}}})
	err := conn.Invoke(context.Background(), ForwardMethod, req, &emptypb.Empty{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Forward without a peer identity: error = %v, want PermissionDenied", err)
	}
	if len(leader.Totals()) != 0 {
		t.Fatalf("a refused forward changed the leader: %v", leader.Totals())
	}
}
