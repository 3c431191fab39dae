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

// AckRequest asks which of Clusters some stream of Identity acknowledged,
// and which of Pairs (each an identity and a cluster): a replica asks the
// questions of many reporters in one request. Clusters and Pairs together
// hold 1 to 256 questions.
type AckRequest struct {
	Identity auth.Identity `json:"identity"`
	Clusters []string      `json:"clusters,omitempty"`
	Pairs    []AckPair     `json:"pairs,omitempty"`
}

// AckPair is one question of an AckRequest: did Identity acknowledge
// Cluster?
type AckPair struct {
	Identity auth.Identity `json:"identity"`
	Cluster  string        `json:"cluster"`
}

// AckAnswer lists the clusters of the request that were acknowledged, and
// the indexes in the request's Pairs of the pairs that were.
type AckAnswer struct {
	Acknowledged []string `json:"acknowledged,omitempty"`
	Pairs        []int    `json:"pairs,omitempty"`
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
	if n := len(req.Clusters) + len(req.Pairs); n == 0 || n > maxAckClusters {
		return nil, status.Errorf(codes.InvalidArgument, "proxy acknowledgement request: %d questions (clusters and pairs), want 1..%d", n, maxAckClusters)
	}
	var out AckAnswer
	for _, c := range req.Clusters {
		if e.s.Acknowledged(req.Identity, c) {
			out.Acknowledged = append(out.Acknowledged, c)
		}
	}
	for i, p := range req.Pairs {
		if e.s.Acknowledged(p.Identity, p.Cluster) {
			out.Pairs = append(out.Pairs, i)
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

// QueryAckPairs asks the replica behind conn which of pairs (at most 256)
// were acknowledged there; the answer holds one value per pair.
func QueryAckPairs(ctx context.Context, conn grpc.ClientConnInterface, pairs []AckPair) ([]bool, error) {
	b, err := json.Marshal(AckRequest{Pairs: pairs})
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
	yes := make([]bool, len(pairs))
	for _, i := range a.Pairs {
		if i < 0 || i >= len(pairs) {
			return nil, status.Errorf(codes.Internal, "proxy acknowledgement answer: pair %d of %d", i, len(pairs))
		}
		yes[i] = true
	}
	return yes, nil
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
// (callers share it); questions wait in a queue and are put to the peers
// in requests of up to 256, at most MaxQueries requests at once; at most
// maxAckFlights questions wait, and one beyond is answered no at once,
// without asking.
type FleetAcks struct {
	Local *Server
	// Peers returns the other replicas (PeerPool.Peers); nil: none.
	Peers func(context.Context) ([]Peer, error)
	// Timeout bounds a question's wait in the queue, and then the request
	// that carries it to the peers; zero means 1s. No answer by then is a
	// no.
	Timeout time.Duration
	// AckedFor and RefusedFor: how long answers are remembered; zero means
	// 30s and 2s.
	AckedFor, RefusedFor time.Duration
	// MaxQueries bounds the requests put to the peers at once; zero means
	// 16.
	MaxQueries int

	mu      sync.Mutex
	known   map[ackKey]ackMemo
	flight  map[ackKey]*ackCall
	queue   []*ackCall
	workers int
	now     func() time.Time
	// settled counts the questions answered (tests, benchmarks).
	settled int
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
	key ackKey
	// expires is when the question stops waiting in the queue.
	expires time.Time
	done    chan struct{}
	acked   bool
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
	c := &ackCall{key: k, expires: f.now().Add(f.timeout()), done: make(chan struct{})}
	f.flight[k] = c
	f.queue = append(f.queue, c)
	if f.workers < cmp.Or(f.MaxQueries, 16) {
		f.workers++
		go f.work()
	}
	return c
}

func (f *FleetAcks) timeout() time.Duration {
	if f.Timeout <= 0 {
		return time.Second
	}
	return f.Timeout
}

// work puts the queued questions to the peers, up to maxAckClusters per
// request, until the queue is empty.
func (f *FleetAcks) work() {
	for {
		f.mu.Lock()
		n := min(len(f.queue), maxAckClusters)
		if n == 0 {
			f.workers--
			f.queue = nil
			f.mu.Unlock()
			return
		}
		batch := slices.Clone(f.queue[:n])
		f.queue = slices.Delete(f.queue, 0, n)
		now := f.now()
		f.mu.Unlock()
		var ask []*ackCall
		for _, c := range batch {
			if now.Before(c.expires) {
				ask = append(ask, c)
			} else {
				f.settle(c, false)
			}
		}
		if len(ask) == 0 {
			continue
		}
		yes := f.ask(ask)
		for i, c := range ask {
			f.settle(c, yes[i])
		}
	}
}

// settle remembers c's answer and gives it to those waiting.
func (f *FleetAcks) settle(c *ackCall, acked bool) {
	f.mu.Lock()
	f.settled++
	delete(f.flight, c.key)
	if f.known == nil || len(f.known) >= maxAckMemos {
		f.known = map[ackKey]ackMemo{}
	}
	f.known[c.key] = ackMemo{acked: acked, until: f.now().Add(f.memoFor(acked))}
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

// ask puts the questions to every peer at once, in one request each, and
// says which some peer vouched for. A peer that cannot be asked vouches for
// nothing.
func (f *FleetAcks) ask(calls []*ackCall) []bool {
	yes := make([]bool, len(calls))
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout())
	defer cancel()
	peers, err := f.Peers(ctx)
	if err != nil || len(peers) == 0 {
		return yes
	}
	pairs := make([]AckPair, len(calls))
	for i, c := range calls {
		pairs[i] = AckPair{Identity: c.key.id, Cluster: c.key.cluster}
	}
	answers := make(chan []bool, len(peers))
	for _, p := range peers {
		go func() {
			got, err := QueryAckPairs(ctx, p.Conn, pairs)
			if err != nil {
				got = nil
			}
			answers <- got
		}()
	}
	for range peers {
		for i, y := range <-answers {
			yes[i] = yes[i] || y
		}
	}
	return yes
}
