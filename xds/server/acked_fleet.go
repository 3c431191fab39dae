package server

import (
	"cmp"
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
	"github.com/sluice-dev/sluice/xds/lrs"
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
//
// Lookup never waits for the peers: load reporting (lrs.Options.LookupAck)
// holds a report whose answer is still to come and judges it once it
// comes, so a flood of new identities cannot stall a stream's receive
// loop. One question per identity and cluster is in flight at a time
// (callers share it), at most MaxQueries are put to the peers at once,
// and at most maxAckFlights wait; a question beyond that is answered no at
// once, without asking.
type FleetAcks struct {
	Local *Server
	// Peers returns the other replicas (PeerPool.Peers); nil: none.
	Peers func(context.Context) ([]Peer, error)
	// Timeout bounds one question, from when it is asked (its wait for a
	// free query included); zero means 1s. No answer by then is a no.
	Timeout time.Duration
	// AckedFor and RefusedFor: how long answers are remembered; zero means
	// 30s and 2s.
	AckedFor, RefusedFor time.Duration
	// MaxQueries bounds the questions put to the peers at once; zero
	// means 16.
	MaxQueries int

	mu     sync.Mutex
	known  map[ackKey]ackMemo
	flight map[ackKey]*ackCall
	slots  chan struct{}
	now    func() time.Time
	// asked counts the questions put to the peers (tests, benchmarks).
	asked int
}

type ackKey struct {
	id      auth.Identity
	cluster string
}

type ackMemo struct {
	acked bool
	until time.Time
}

// ackCall is one question to the peers that every lookup of the same key
// shares until it is answered. It is an lrs.Ack.
type ackCall struct {
	done  chan struct{}
	acked bool
}

// Done is closed once the peers answered (or the question timed out).
func (c *ackCall) Done() <-chan struct{} { return c.done }

// Acked is the answer, false until Done is closed.
func (c *ackCall) Acked() bool {
	select {
	case <-c.done:
		return c.acked
	default:
		return false
	}
}

var _ lrs.Ack = (*ackCall)(nil)

// maxAckMemos bounds the remembered answers; beyond it they are forgotten
// all at once (they are only a cache of the peers' state).
const maxAckMemos = 16384

// maxAckFlights bounds the questions waiting for the peers: a lookup of a
// new key beyond it is answered no at once (the load is refused, never
// counted on a guess), and asked again on a later report.
const maxAckFlights = 4096

// Acknowledged reports whether some stream bound to exactly id, on any
// replica, acknowledged cluster, waiting for the peers' answer if it has
// to. A peer that cannot be asked counts as not having acknowledged it:
// the load is refused, never counted on a guess.
func (f *FleetAcks) Acknowledged(id auth.Identity, cluster string) bool {
	a := f.Lookup(id, cluster)
	if d := a.Done(); d != nil {
		<-d
	}
	return a.Acked()
}

// Lookup answers Acknowledged without waiting: from this replica's own
// streams or a remembered answer at once, else with the question to the
// peers in flight for this identity and cluster (started if none is),
// whose Done is closed once they answered, within Timeout.
func (f *FleetAcks) Lookup(id auth.Identity, cluster string) lrs.Ack {
	if f.Local != nil && f.Local.Acknowledged(id, cluster) {
		return lrs.Known(true)
	}
	if f.Peers == nil {
		return lrs.Known(false)
	}
	k := ackKey{id: id, cluster: cluster}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.now == nil {
		f.now = time.Now
	}
	if m, ok := f.known[k]; ok && f.now().Before(m.until) {
		return lrs.Known(m.acked)
	}
	if c, ok := f.flight[k]; ok {
		return c
	}
	if len(f.flight) >= maxAckFlights {
		return lrs.Known(false)
	}
	if f.flight == nil {
		f.flight = map[ackKey]*ackCall{}
	}
	if f.slots == nil {
		f.slots = make(chan struct{}, cmp.Or(f.MaxQueries, 16))
	}
	c := &ackCall{done: make(chan struct{})}
	f.flight[k] = c
	f.asked++
	go f.answer(k, c)
	return c
}

// answer puts one question to the peers, once a query slot is free, and
// remembers the answer.
func (f *FleetAcks) answer(k ackKey, c *ackCall) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	acked := false
	select {
	case f.slots <- struct{}{}:
		acked = f.ask(ctx, k.id, k.cluster)
		<-f.slots
	case <-ctx.Done():
	}
	f.mu.Lock()
	delete(f.flight, k)
	if f.known == nil || len(f.known) >= maxAckMemos {
		f.known = map[ackKey]ackMemo{}
	}
	f.known[k] = ackMemo{acked: acked, until: f.now().Add(f.memoFor(acked))}
	c.acked = acked
	f.mu.Unlock()
	close(c.done)
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
func (f *FleetAcks) ask(ctx context.Context, id auth.Identity, cluster string) bool {
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
