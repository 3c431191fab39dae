package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/xds/auth"
)

// Several replicas serve xDS, each to its own proxies; a step counts only
// when the proxies of every replica carry it. The leader asks each peer
// replica, over the ProxySync service, where its proxies stand on the route
// contents it waits for. Content versions are hashes of the resources, the
// same on every replica that publishes the same plan.

// SyncMethod is the full gRPC method name of the ProxySync service's one
// call. Request and response are JSON (SyncRequest, PeerSync) in a
// BytesValue: small, rare messages between replicas of one version.
const SyncMethod = "/sluice.xds.v1alpha1.ProxySync/Synced"

// maxSyncTargets bounds one request's targets (a service has a few routes).
const maxSyncTargets = 1024

// SyncTarget is one resource content a wait is about.
type SyncTarget struct {
	TypeURL string `json:"typeUrl"`
	Name    string `json:"name"`
	Version string `json:"version"`
	// Owner is the namespace of the service waiting (see
	// Server.WaitSyncedFor); empty: every rejection holds.
	Owner string `json:"owner,omitempty"`
}

// SyncRequest asks a replica where its proxies stand on Targets.
type SyncRequest struct {
	Targets []SyncTarget `json:"targets"`
	// Holding, when set, also asks which proxies may still send traffic to
	// these clusters through the targets' route configurations
	// (Server.Holders), tombstones included.
	Holding []string `json:"holding,omitempty"`
	// Rejected, when set, also asks for the replica's proxies' rejections
	// in force of these resources, by type URL (Server.Rejections). A
	// request may hold only these, with no Targets.
	Rejected map[string][]string `json:"rejected,omitempty"`
}

// maxHolders bounds the holders one answer names.
const maxHolders = 64

// PeerSync is one replica's answer: its proxies subscribed to the targets,
// by state, each list sorted.
type PeerSync struct {
	Replica string   `json:"replica"`
	Acked   []string `json:"acked,omitempty"`
	Nacked  []string `json:"nacked,omitempty"`
	Pending []string `json:"pending,omitempty"`
	Stale   []string `json:"stale,omitempty"`
	// SilentSince is Sync.SilentSince for Stale.
	SilentSince map[string]time.Time `json:"silentSince,omitempty"`
	// Limits counts this replica's proxies of the targets' route
	// configurations by what their form cannot express (RouteLimits).
	Limits map[string]int `json:"limits,omitempty"`
	// Holders answers SyncRequest.Holding, at most maxHolders.
	Holders []Holder `json:"holders,omitempty"`
	// NackDetails are the route rejections of the proxies in Nacked,
	// "<node> on <replica>: <message>" (Server.RouteNackDetails), at most
	// 16.
	NackDetails []string `json:"nackDetails,omitempty"`
	// Rejections answers SyncRequest.Rejected, at most 16;
	// RejectionsOmitted counts those left out.
	Rejections        []Rejection `json:"rejections,omitempty"`
	RejectionsOmitted int         `json:"rejectionsOmitted,omitempty"`
}

// SyncedNow classifies this replica's proxies on targets without waiting.
func (s *Server) SyncedNow(targets []SyncTarget) PeerSync {
	ts := make([]target, len(targets))
	for i, t := range targets {
		ts[i] = s.targetOf(t.TypeURL, t.Name, t.Version)
		ts[i].owner = t.Owner
	}
	t := s.tracker
	t.mu.Lock()
	p := t.progressLocked(ts)
	t.mu.Unlock()
	ps := PeerSync{Acked: p.acked, Nacked: p.nacked, Pending: p.pending, Stale: p.stale, SilentSince: p.silentSince}
	if len(ps.Pending) > 0 {
		// The leader polls until nothing is pending and keeps only that
		// answer's limits: do not walk every stream on each poll.
		return ps
	}
	var routes []string
	for _, t := range targets {
		if t.TypeURL == resource.RouteType {
			routes = append(routes, t.Name)
		}
	}
	ps.Limits = s.RouteLimits(routes)
	return ps
}

type proxySync interface {
	Synced(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

var proxySyncDesc = grpc.ServiceDesc{
	ServiceName: "sluice.xds.v1alpha1.ProxySync",
	HandlerType: (*proxySync)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Synced",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(proxySync).Synced(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: SyncMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(proxySync).Synced(ctx, req.(*wrapperspb.BytesValue))
			})
		},
	}},
	Metadata: "sluice/xds/proxysync",
}

// syncEndpoint answers peers for one server.
type syncEndpoint struct {
	s       *Server
	replica string
}

// Synced answers one SyncRequest from a caller that proved to be a replica
// of Sluice (auth.MethodPeer: the peer listener).
func (e syncEndpoint) Synced(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	if id, ok := auth.FromContext(ctx); !ok || id.Method != auth.MethodPeer {
		return nil, status.Error(codes.PermissionDenied, "proxy sync is answered only to Sluice's own replicas, on the peer listener")
	}
	var req SyncRequest
	if err := json.Unmarshal(in.GetValue(), &req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "proxy sync request: %v", err)
	}
	rejected := 0
	for _, ns := range req.Rejected {
		rejected += len(ns)
	}
	if (len(req.Targets) == 0 && rejected == 0) || len(req.Targets) > maxSyncTargets || rejected > maxSyncTargets {
		return nil, status.Errorf(codes.InvalidArgument, "proxy sync request: %d targets and %d resources whose rejections are asked for, want 1..%d targets or rejections, at most %d of each",
			len(req.Targets), rejected, maxSyncTargets, maxSyncTargets)
	}
	if len(req.Holding) > maxSyncTargets {
		return nil, status.Errorf(codes.InvalidArgument, "proxy sync request: %d clusters held, at most %d", len(req.Holding), maxSyncTargets)
	}
	var p PeerSync
	if len(req.Targets) > 0 {
		p = e.s.SyncedNow(req.Targets)
		p.NackDetails = e.s.RouteNackDetails(p.Nacked, e.replica)
		p.NackDetails = p.NackDetails[:min(len(p.NackDetails), maxPeerRejections)]
	}
	if rejected > 0 {
		p.Rejections, p.RejectionsOmitted = boundRejections(e.s.Rejections(req.Rejected))
	}
	p.Replica = e.replica
	if len(req.Holding) > 0 {
		var routes []string
		for _, t := range req.Targets {
			if t.TypeURL == resource.RouteType {
				routes = append(routes, t.Name)
			}
		}
		p.Holders = e.s.Holders(routes, req.Holding)
		p.Holders = p.Holders[:min(len(p.Holders), maxHolders)]
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "proxy sync answer: %v", err)
	}
	return wrapperspb.Bytes(b), nil
}

// RegisterSync adds the ProxySync service to g: peers ask this replica,
// named replica in answers, where its proxies stand. Register it on the peer
// listener, whose callers are proven replicas.
func (s *Server) RegisterSync(g grpc.ServiceRegistrar, replica string) {
	g.RegisterService(&proxySyncDesc, syncEndpoint{s: s, replica: replica})
}

// QuerySync asks the replica behind conn where its proxies stand on targets.
func QuerySync(ctx context.Context, conn grpc.ClientConnInterface, targets []SyncTarget) (PeerSync, error) {
	return QuerySyncRequest(ctx, conn, SyncRequest{Targets: targets})
}

// QuerySyncRequest asks the replica behind conn req.
func QuerySyncRequest(ctx context.Context, conn grpc.ClientConnInterface, req SyncRequest) (PeerSync, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return PeerSync{}, err
	}
	out := new(wrapperspb.BytesValue)
	if err := conn.Invoke(ctx, SyncMethod, wrapperspb.Bytes(b), out); err != nil {
		return PeerSync{}, err
	}
	var p PeerSync
	if err := json.Unmarshal(out.GetValue(), &p); err != nil {
		return PeerSync{}, fmt.Errorf("proxy sync answer: %w", err)
	}
	return p, nil
}

// PeerPool keeps connections to the other replicas, found by Resolve.
type PeerPool struct {
	// Resolve returns the address (host:port) of every replica, this one
	// included.
	Resolve func(ctx context.Context) ([]string, error)
	// Self is this replica's own address as Resolve returns it.
	Self string
	// Credentials secure the connections to the peers: Sluice's own
	// certificate, and only a peer presenting it is trusted
	// (certs.PeerTLS.ClientCredentials). Required.
	Credentials credentials.TransportCredentials

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// peerConnectParams reconnect to a peer within a second of its coming back:
// a replica restarted at the same address must be asked about its proxies
// (and sent load reports) at once, not after gRPC's default backoff, which
// grows to two minutes while the replica is away. Replicas are few.
var peerConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// Peer is one other replica.
type Peer struct {
	Addr string
	Conn grpc.ClientConnInterface
}

// Peers returns the other replicas, opening connections to new ones and
// closing those to replicas that are gone.
func (p *PeerPool) Peers(ctx context.Context) ([]Peer, error) {
	switch {
	case p.Resolve == nil:
		return nil, errors.New("peer pool: Resolve is required")
	case p.Credentials == nil:
		return nil, errors.New("peer pool: Credentials are required (the peer channel is mutual TLS)")
	}
	addrs, err := p.Resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve peers: %w", err)
	}
	addrs = slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == p.Self })
	slices.Sort(addrs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	for a, c := range p.conns {
		if !slices.Contains(addrs, a) {
			c.Close()
			delete(p.conns, a)
		}
	}
	out := make([]Peer, 0, len(addrs))
	for _, a := range addrs {
		c, ok := p.conns[a]
		if !ok {
			c, err = grpc.NewClient(a, grpc.WithTransportCredentials(p.Credentials), grpc.WithConnectParams(peerConnectParams))
			if err != nil {
				return nil, fmt.Errorf("peer %s: %w", a, err)
			}
			p.conns[a] = c
		}
		out = append(out, Peer{Addr: a, Conn: c})
	}
	return out, nil
}

// Close closes every connection.
func (p *PeerPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		c.Close()
		delete(p.conns, a)
	}
}
