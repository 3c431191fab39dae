package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// guardedStream checks every message a client sends: the node it names
// binds to the stream's identity, and the names it subscribes to or
// reports on stay within the limit.
type guardedStream struct {
	grpc.ServerStream
	ctx  context.Context
	slot *atomic.Pointer[Identity]
	g    *Guard
	id   Identity
	// delta counts the names a delta stream subscribed to, per type.
	delta map[string]int
	// counted is the key the stream holds a slot under, "" if none.
	counted string
	// refusal is the status that ends the stream once a message broke a
	// rule: the stream ends with it whatever the handler returns (some
	// handlers end a stream without error when receiving fails).
	refusal atomic.Pointer[error]
}

// Context returns the stream's context, which carries its identity.
func (s *guardedStream) Context() context.Context { return s.ctx }

// RecvMsg receives a message and refuses the stream when the message
// breaks a rule.
func (s *guardedStream) RecvMsg(m any) error {
	if err := s.refusal.Load(); err != nil {
		return *err
	}
	err := s.ServerStream.RecvMsg(m)
	switch {
	case status.Code(err) == codes.ResourceExhausted:
		s.g.opts.Metrics.refused.WithLabelValues(ReasonMessageTooLarge).Inc()
	case err != nil:
		// The client ended the stream, or the connection did.
		return err
	default:
		err = s.check(m)
	}
	if err != nil {
		s.refusal.Store(&err)
	}
	return err
}

// check checks one received message.
func (s *guardedStream) check(m any) error {
	var node *corev3.Node
	names := 0
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		node, names = r.GetNode(), len(r.GetResourceNames())
	case *discoveryv3.DeltaDiscoveryRequest:
		node = r.GetNode()
		n := s.delta[r.GetTypeUrl()] + len(r.GetResourceNamesSubscribe()) - len(r.GetResourceNamesUnsubscribe())
		s.delta[r.GetTypeUrl()] = max(n, 0)
		names = max(n, len(r.GetResourceNamesSubscribe()))
	case *lrsv3.LoadStatsRequest:
		node, names = r.GetNode(), len(r.GetClusterStats())
	default:
		return nil
	}
	if names > s.g.opts.MaxNamesPerRequest {
		return s.g.refuse(s.ctx, ReasonTooManyNames, codes.InvalidArgument,
			"%d resource names in one request; at most %d are served", names, s.g.opts.MaxNamesPerRequest)
	}
	return s.bind(node)
}

// bind checks node against the stream's identity; the first node binds the
// stream, later ones must bind to the same identity.
func (s *guardedStream) bind(node *corev3.Node) error {
	prev := s.slot.Load()
	if node == nil {
		if prev == nil && s.id.Method == MethodLegacy {
			return s.g.refuse(s.ctx, ReasonNoNamespace, codes.InvalidArgument,
				"the first request of a legacy client must name its node, with metadata %q", NodeNamespaceKey)
		}
		return nil
	}
	bound, err := s.id.Bind(node)
	switch {
	case errors.Is(err, ErrNoNamespace):
		return s.g.refuse(s.ctx, ReasonNoNamespace, codes.InvalidArgument, "%v", err)
	case err != nil:
		return s.g.refuse(s.ctx, ReasonNamespaceMismatch, codes.PermissionDenied, "%v", err)
	case prev != nil && *prev != bound:
		return s.g.refuse(s.ctx, ReasonNamespaceMismatch, codes.PermissionDenied,
			"node changed from %s to %s on one stream", prev, bound)
	case prev != nil:
		return nil
	}
	if bound.Method == MethodLegacy {
		if err := s.g.opts.LegacyAllowed(s.ctx, bound.Namespace); err != nil {
			return s.g.refuse(s.ctx, ReasonLegacyNotAllowed, codes.PermissionDenied,
				"namespace %q may not use the plaintext legacy listener: %v", bound.Namespace, err)
		}
		if err := s.acquire(bound); err != nil {
			return err
		}
	}
	s.slot.Store(&bound)
	return nil
}

// acquire takes one of id's stream slots for this stream.
func (s *guardedStream) acquire(id Identity) error {
	key := id.String()
	if !s.g.streams.acquire(key) {
		return s.g.refuse(s.ctx, ReasonTooManyStreams, codes.ResourceExhausted,
			"%s already holds %d streams, the most one identity may open", id, s.g.opts.MaxStreamsPerIdentity)
	}
	s.counted = key
	return nil
}

// release gives back the stream's slot, if it holds one.
func (s *guardedStream) release() {
	if s.counted != "" {
		s.g.streams.release(s.counted)
		s.counted = ""
	}
}

// streamCounter counts open streams per identity.
type streamCounter struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newStreamCounter(limit int) *streamCounter {
	return &streamCounter{max: limit, open: map[string]int{}}
}

func (c *streamCounter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max >= 0 && c.open[key] >= c.max {
		return false
	}
	c.open[key]++
	return true
}

func (c *streamCounter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key] <= 1 {
		delete(c.open, key)
		return
	}
	c.open[key]--
}
