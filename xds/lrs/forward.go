package lrs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/auth"
)

// ForwardMethod is the full gRPC method name by which a replica forwards its
// local totals to the leader. The request is a LoadStatsRequest whose node.id
// names the source replica and whose cluster_stats carry one entry per key:
// cluster_name is the service, cluster_service_name the namespace, and one
// upstream_locality_stats entry per origin has the origin's class as
// locality.region, its identity as locality.zone, and the track and revision
// as locality.sub_zone (router.LocalitySubZone, as on the data plane). Unlike
// LRS, the counts are cumulative since the source started, which makes
// forwarding idempotent (see [Aggregator.Merge]). It is served on the peer
// listener only, to callers that proved to be Sluice (auth.MethodPeer).
const ForwardMethod = "/sluice.lrs.v1alpha1.LoadForwarding/Forward"

// forwardingService is the handler type of the forwarding service.
type forwardingService interface {
	Forward(context.Context, *lrsv3.LoadStatsRequest) (*emptypb.Empty, error)
}

var forwardingDesc = grpc.ServiceDesc{
	ServiceName: "sluice.lrs.v1alpha1.LoadForwarding",
	HandlerType: (*forwardingService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Forward",
		Handler:    forwardHandler,
	}},
	Metadata: "sluice/lrs/forward",
}

func forwardHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(lrsv3.LoadStatsRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(forwardingService).Forward(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: ForwardMethod}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return srv.(forwardingService).Forward(ctx, req.(*lrsv3.LoadStatsRequest))
	})
}

// leaderEndpoint merges forwarded totals into an aggregator.
type leaderEndpoint struct {
	agg *Aggregator
}

var _ forwardingService = leaderEndpoint{}

// RegisterForwarding adds to g the endpoint by which other replicas forward
// their local totals; they are merged into a. Register it on every replica:
// whichever is leader receives the forwards.
func RegisterForwarding(g grpc.ServiceRegistrar, a *Aggregator) {
	g.RegisterService(&forwardingDesc, leaderEndpoint{agg: a})
}

// Forward merges one forwarded snapshot from a caller that proved to be a
// replica of Sluice.
func (e leaderEndpoint) Forward(ctx context.Context, req *lrsv3.LoadStatsRequest) (*emptypb.Empty, error) {
	if id, ok := auth.FromContext(ctx); !ok || id.Method != auth.MethodPeer {
		return nil, status.Error(codes.PermissionDenied, "forwarded load is accepted only from Sluice's own replicas, on the peer listener")
	}
	source, totals, err := decodeForward(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	e.agg.Merge(source, totals)
	return &emptypb.Empty{}, nil
}

// encodeForward builds the wire form of a replica's local totals.
func encodeForward(source string, totals map[Key]ByOrigin) *lrsv3.LoadStatsRequest {
	req := &lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: source}}
	keys := make(map[Key]Totals, len(totals))
	for k := range totals {
		keys[k] = Totals{}
	}
	for _, k := range SortedKeys(keys) {
		cs := &endpointv3.ClusterStats{ClusterName: k.Service, ClusterServiceName: k.Namespace}
		subZone := router.LocalitySubZone(router.Track(k.Track), k.Revision)
		for _, o := range sortedOrigins(totals[k]) {
			t := totals[k][o]
			cs.UpstreamLocalityStats = append(cs.UpstreamLocalityStats, &endpointv3.UpstreamLocalityStats{
				Locality:                &corev3.Locality{Region: string(o.Class), Zone: o.Identity, SubZone: subZone},
				TotalSuccessfulRequests: t.Requests - t.Errors,
				TotalErrorRequests:      t.Errors,
				TotalIssuedRequests:     t.Issued,
				TotalRequestsInProgress: t.InFlight,
			})
		}
		req.ClusterStats = append(req.ClusterStats, cs)
	}
	return req
}

// sortedOrigins returns m's origins by class, then identity.
func sortedOrigins(m ByOrigin) []Origin {
	out := make([]Origin, 0, len(m))
	for o := range m {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Class != out[j].Class {
			return out[i].Class < out[j].Class
		}
		return out[i].Identity < out[j].Identity
	})
	return out
}

// maxForwardedOrigins bounds the origins of one forwarded key: the named
// ones a replica keeps, and each class's folded rest.
const maxForwardedOrigins = MaxOriginsPerKey + 3

// decodeForward checks and reads a forwarded snapshot.
func decodeForward(req *lrsv3.LoadStatsRequest) (string, map[Key]ByOrigin, error) {
	source := req.GetNode().GetId()
	if source == "" {
		return "", nil, errors.New("forwarded load: node.id must name the source replica")
	}
	out := map[Key]ByOrigin{}
	for i, cs := range req.GetClusterStats() {
		if cs.GetClusterName() == "" || cs.GetClusterServiceName() == "" {
			return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d]: cluster_name (service) and cluster_service_name (namespace) are required", i)
		}
		stats := cs.GetUpstreamLocalityStats()
		if n := len(stats); n == 0 || n > maxForwardedOrigins {
			return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d]: %d upstream_locality_stats entries (one per origin), want 1..%d", i, n, maxForwardedOrigins)
		}
		var k Key
		origins := ByOrigin{}
		for j, ls := range stats {
			track, revision, err := router.ParseLocalitySubZone(ls.GetLocality().GetSubZone())
			if err != nil {
				return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d][%d]: %w", i, j, err)
			}
			kj := Key{Namespace: cs.GetClusterServiceName(), Service: cs.GetClusterName(), Track: string(track), Revision: revision}
			if j > 0 && kj != k {
				return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d][%d]: sub_zone %q differs from the entry's first", i, j, ls.GetLocality().GetSubZone())
			}
			k = kj
			o := Origin{Class: Class(ls.GetLocality().GetRegion()), Identity: ls.GetLocality().GetZone()}
			if !o.Class.Valid() {
				return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d][%d]: region %q: want an origin class (%s, %s or %s)", i, j, o.Class, ClassAuthenticated, ClassLegacy, ClassUnidentified)
			}
			if _, dup := origins[o]; dup {
				return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d][%d]: duplicate origin %s", i, j, o)
			}
			ok, errs := ls.GetTotalSuccessfulRequests(), ls.GetTotalErrorRequests()
			if ok+errs < ok {
				return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d][%d]: %d successful and %d failed requests overflow a counter", i, j, ok, errs)
			}
			origins[o] = Totals{Requests: ok + errs, Errors: errs, Issued: ls.GetTotalIssuedRequests(), InFlight: ls.GetTotalRequestsInProgress()}
		}
		if _, dup := out[k]; dup {
			return "", nil, fmt.Errorf("forwarded load: cluster_stats[%d]: duplicate key %s", i, k)
		}
		out[k] = origins
	}
	return source, out, nil
}

// Forwarder periodically sends a non-leader replica's local totals to the
// leader. It implements the controller-runtime Runnable shape (Start).
type Forwarder struct {
	// Aggregator whose local totals are forwarded. Required.
	Aggregator *Aggregator
	// Conn reaches the leader's forwarding endpoint. Required.
	Conn grpc.ClientConnInterface
	// Source names this replica; it must change when the replica restarts
	// (for example pod name plus start time), since counts restart at zero.
	Source string
	// Interval between forwards; zero means DefaultInterval.
	Interval time.Duration
	// Logger reports failed forwards.
	Logger logr.Logger
}

// Forward sends the current local totals once.
func (f *Forwarder) Forward(ctx context.Context) error {
	if err := f.check(); err != nil {
		return err
	}
	req := encodeForward(f.Source, f.Aggregator.LocalOrigins())
	if err := f.Conn.Invoke(ctx, ForwardMethod, req, &emptypb.Empty{}); err != nil {
		return fmt.Errorf("forward load of %d keys to the leader: %w", len(req.GetClusterStats()), err)
	}
	return nil
}

func (f *Forwarder) check() error {
	switch {
	case f.Aggregator == nil:
		return errors.New("load forwarder: Aggregator is required")
	case f.Conn == nil:
		return errors.New("load forwarder: Conn to the leader is required")
	case f.Source == "":
		return errors.New("load forwarder: Source (this replica's unique name) is required")
	case f.Interval < 0:
		return fmt.Errorf("load forwarder: interval %s must not be negative", f.Interval)
	}
	return nil
}

// Start forwards every Interval until ctx ends. A failed forward is logged and
// retried at the next tick; since totals are cumulative nothing is lost.
func (f *Forwarder) Start(ctx context.Context) error {
	if err := f.check(); err != nil {
		return err
	}
	interval := f.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := f.Forward(ctx); err != nil && ctx.Err() == nil {
				f.Logger.Error(err, "forward load reports", "source", f.Source)
			}
		}
	}
}
