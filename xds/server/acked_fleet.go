package server

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/xds/auth"
)

// A client's load reports and its ADS stream need not reach the same
// replica: Envoy names its load reporting server as a cluster of its own,
// which a Service may balance to another replica than the ADS cluster. Load
// counts only for clusters its reporter acknowledged, so a replica that
// never sent the reporter anything asks the others over the peer channel
// (ProxyAcks), and remembers their answer for a while.

// AckMethod is the full gRPC method name of the ProxyAcks service's one
// call. Request and response are JSON (AckRequest, AckAnswer) in a
// BytesValue, like ProxySync's.
const AckMethod = "/sluice.xds.v1alpha1.ProxyAcks/Acknowledged"

// maxAckClusters bounds one AckRequest.
const maxAckClusters = 256

// AckRequest asks which of Clusters some stream of Identity acknowledged.
type AckRequest struct {
	Identity auth.Identity `json:"identity"`
	Clusters []string      `json:"clusters"`
}

// AckAnswer lists the clusters of the request that were acknowledged.
type AckAnswer struct {
	Acknowledged []string `json:"acknowledged,omitempty"`
}

type proxyAcks interface {
	Acknowledged(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

var proxyAcksDesc = grpc.ServiceDesc{
	ServiceName: "sluice.xds.v1alpha1.ProxyAcks",
	HandlerType: (*proxyAcks)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Acknowledged",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(proxyAcks).Acknowledged(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: AckMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(proxyAcks).Acknowledged(ctx, req.(*wrapperspb.BytesValue))
			})
		},
	}},
	Metadata: "sluice/xds/proxyacks",
}

type ackEndpoint struct{ s *Server }

// Acknowledged answers one AckRequest from a caller that proved to be a
// replica of Sluice (auth.MethodPeer), from this replica's own streams only.
func (e ackEndpoint) Acknowledged(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	if id, ok := auth.FromContext(ctx); !ok || id.Method != auth.MethodPeer {
		return nil, status.Error(codes.PermissionDenied, "proxy acknowledgements are answered only to Sluice's own replicas, on the peer listener")
	}
	var req AckRequest
	if err := json.Unmarshal(in.GetValue(), &req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "proxy acknowledgement request: %v", err)
	}
	if len(req.Clusters) == 0 || len(req.Clusters) > maxAckClusters {
		return nil, status.Errorf(codes.InvalidArgument, "proxy acknowledgement request: %d clusters, want 1..%d", len(req.Clusters), maxAckClusters)
	}
	var out AckAnswer
	for _, c := range req.Clusters {
		if e.s.Acknowledged(req.Identity, c) {
			out.Acknowledged = append(out.Acknowledged, c)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "proxy acknowledgement answer: %v", err)
	}
	return wrapperspb.Bytes(b), nil
}

// RegisterAcks adds the ProxyAcks service to g. Register it on the peer
// listener, whose callers are proven replicas.
func (s *Server) RegisterAcks(g grpc.ServiceRegistrar) {
	g.RegisterService(&proxyAcksDesc, ackEndpoint{s: s})
}

// QueryAcks asks the replica behind conn which of clusters id acknowledged
// there.
func QueryAcks(ctx context.Context, conn grpc.ClientConnInterface, id auth.Identity, clusters []string) ([]string, error) {
	b, err := json.Marshal(AckRequest{Identity: id, Clusters: clusters})
	if err != nil {
		return nil, err
	}
	out := new(wrapperspb.BytesValue)
	if err := conn.Invoke(ctx, AckMethod, wrapperspb.Bytes(b), out); err != nil {
		return nil, err
	}
	var a AckAnswer
	if err := json.Unmarshal(out.GetValue(), &a); err != nil {
		return nil, status.Errorf(codes.Internal, "proxy acknowledgement answer: %v", err)
	}
	return a.Acknowledged, nil
}

// FleetAcks answers Acknowledged for the whole fleet: this replica's
// streams first, then the other replicas', whose answers are remembered
// (an acknowledgement for AckedFor, a refusal for RefusedFor, so a cluster
// acknowledged a moment after is not refused for long).
type FleetAcks struct {
	Local *Server
	// Peers returns the other replicas (PeerPool.Peers); nil: none.
	Peers func(context.Context) ([]Peer, error)
	// Timeout bounds one question to the peers; zero means 1s.
	Timeout time.Duration
	// AckedFor and RefusedFor: how long answers are remembered; zero means
	// 30s and 2s.
	AckedFor, RefusedFor time.Duration

	mu     sync.Mutex
	known  map[ackKey]ackMemo
	flight map[ackKey]*ackCall
	now    func() time.Time
}

type ackKey struct {
	id      auth.Identity
	cluster string
}

type ackMemo struct {
	acked bool
	until time.Time
}

// ackCall is one question to the peers that others with the same key wait
// for.
type ackCall struct {
	done  chan struct{}
	acked bool
}

// maxAckMemos bounds the remembered answers; beyond it they are forgotten
// all at once (they are only a cache of the peers' state).
const maxAckMemos = 16384

// Acknowledged reports whether some stream bound to exactly id, on any
// replica, acknowledged cluster. A peer that cannot be asked counts as not
// having acknowledged it: the load is refused, never counted on a guess.
func (f *FleetAcks) Acknowledged(id auth.Identity, cluster string) bool {
	if f.Local != nil && f.Local.Acknowledged(id, cluster) {
		return true
	}
	if f.Peers == nil {
		return false
	}
	k := ackKey{id: id, cluster: cluster}
	f.mu.Lock()
	if f.now == nil {
		f.now = time.Now
	}
	if m, ok := f.known[k]; ok && f.now().Before(m.until) {
		f.mu.Unlock()
		return m.acked
	}
	if c, ok := f.flight[k]; ok {
		f.mu.Unlock()
		<-c.done
		return c.acked
	}
	c := &ackCall{done: make(chan struct{})}
	if f.flight == nil {
		f.flight = map[ackKey]*ackCall{}
	}
	f.flight[k] = c
	f.mu.Unlock()

	c.acked = f.ask(id, cluster)

	f.mu.Lock()
	delete(f.flight, k)
	if f.known == nil || len(f.known) >= maxAckMemos {
		f.known = map[ackKey]ackMemo{}
	}
	f.known[k] = ackMemo{acked: c.acked, until: f.now().Add(f.memoFor(c.acked))}
	f.mu.Unlock()
	close(c.done)
	return c.acked
}

func (f *FleetAcks) memoFor(acked bool) time.Duration {
	switch {
	case acked && f.AckedFor > 0:
		return f.AckedFor
	case acked:
		return 30 * time.Second
	case f.RefusedFor > 0:
		return f.RefusedFor
	}
	return 2 * time.Second
}

// ask puts the question to every peer at once.
func (f *FleetAcks) ask(id auth.Identity, cluster string) bool {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	peers, err := f.Peers(ctx)
	if err != nil || len(peers) == 0 {
		return false
	}
	answers := make(chan bool, len(peers))
	for _, p := range peers {
		go func() {
			got, err := QueryAcks(ctx, p.Conn, id, []string{cluster})
			answers <- err == nil && slices.Contains(got, cluster)
		}()
	}
	for range peers {
		if <-answers {
			return true
		}
	}
	return false
}
