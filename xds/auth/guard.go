package auth

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Limits of a [Guard] by default.
const (
	// DefaultMaxStreamsPerIdentity bounds the streams one identity (one
	// ServiceAccount, or one namespace on the legacy listener) holds open.
	DefaultMaxStreamsPerIdentity = 512
	// DefaultMaxNamesPerRequest bounds the resource names one request
	// subscribes to (for delta streams: all a stream subscribed to, per
	// type) and the clusters one load report names.
	DefaultMaxNamesPerRequest = 5000
	// DefaultMaxRecvMsgSize bounds one message a client sends.
	DefaultMaxRecvMsgSize = 4 << 20
)

// GuardOptions configure a [Guard].
type GuardOptions struct {
	// Tokens verifies bearer tokens; nil refuses every token.
	Tokens *TokenVerifier
	// Legacy makes the guard serve the plaintext listener for old clients:
	// nothing is proven, every stream is a [MethodLegacy] identity whose
	// namespace is its node's claim, and LegacyAllowed must accept it.
	Legacy bool
	// LegacyAllowed returns nil if a namespace may be served on the legacy
	// listener, else an error saying why not. Required when Legacy is set.
	LegacyAllowed func(ctx context.Context, namespace string) error
	// MaxStreamsPerIdentity: default [DefaultMaxStreamsPerIdentity];
	// negative means no limit.
	MaxStreamsPerIdentity int
	// MaxNamesPerRequest: default [DefaultMaxNamesPerRequest].
	MaxNamesPerRequest int
	// MaxRecvMsgSize in bytes: default [DefaultMaxRecvMsgSize].
	MaxRecvMsgSize int
	// Metrics counts refusals and panics; nil counts nothing.
	Metrics *Metrics
	// Logger receives refusals (level 1) and recovered panics.
	Logger logr.Logger
}

// Guard admits the streams and calls of one gRPC listener: it
// authenticates each (see [GuardOptions]), binds the node every stream
// names to the identity it proved, enforces the limits, and recovers
// panics of the handlers. Install it with [Guard.ServerOptions]; handlers
// obtain the identity with FromContext(stream.Context()).
type Guard struct {
	opts    GuardOptions
	streams *streamCounter
}

// NewGuard validates opts and returns a Guard.
func NewGuard(opts GuardOptions) (*Guard, error) {
	if opts.Legacy && opts.LegacyAllowed == nil {
		return nil, errors.New("guard: the legacy listener needs a rule for which namespaces may use it")
	}
	if opts.Legacy && opts.Tokens != nil {
		return nil, errors.New("guard: the legacy listener verifies no tokens")
	}
	if opts.MaxNamesPerRequest < 0 || opts.MaxRecvMsgSize < 0 {
		return nil, fmt.Errorf("guard: limits must not be negative (names %d, message size %d)", opts.MaxNamesPerRequest, opts.MaxRecvMsgSize)
	}
	if opts.MaxStreamsPerIdentity == 0 {
		opts.MaxStreamsPerIdentity = DefaultMaxStreamsPerIdentity
	}
	if opts.MaxNamesPerRequest == 0 {
		opts.MaxNamesPerRequest = DefaultMaxNamesPerRequest
	}
	if opts.MaxRecvMsgSize == 0 {
		opts.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if opts.Metrics == nil {
		m, err := NewMetrics(nil)
		if err != nil {
			return nil, err
		}
		opts.Metrics = m
	}
	return &Guard{opts: opts, streams: newStreamCounter(opts.MaxStreamsPerIdentity)}, nil
}

// ServerOptions returns the options that install the guard on a
// grpc.Server: its interceptors and the receive size limit.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainStreamInterceptor(g.Stream),
		grpc.ChainUnaryInterceptor(g.Unary),
		grpc.MaxRecvMsgSize(g.opts.MaxRecvMsgSize),
	}
}

// Stream is the stream interceptor.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer g.recover(info.FullMethod, &err)
	id, err := g.authenticate(ss.Context())
	if err != nil {
		return err
	}
	ctx, slot := withBinding(ss.Context(), id)
	s := &guardedStream{ServerStream: ss, ctx: ctx, slot: slot, g: g, id: id, delta: map[string]int{}}
	defer s.release()
	if !g.opts.Legacy {
		// An authenticated identity is counted at once; a legacy one
		// only once its node names the namespace it is counted in.
		if err := s.acquire(id); err != nil {
			return err
		}
	}
	err = handler(srv, s)
	if refusal := s.refusal.Load(); refusal != nil {
		return *refusal
	}
	return err
}

// Unary is the unary interceptor: calls are authenticated like streams and
// carry the identity in their context; they name no node.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer g.recover(info.FullMethod, &err)
	id, err := g.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return handler(NewContext(ctx, id), req)
}

// recover turns a panic of a handler into INTERNAL for that stream or
// call, logs it with its stack and counts it.
func (g *Guard) recover(method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	g.opts.Metrics.panics.Inc()
	g.opts.Logger.Error(fmt.Errorf("panic: %v", r), "xDS handler panicked; the stream ends, the server keeps serving", "method", method, "stack", string(debug.Stack()))
	*err = status.Error(codes.Internal, "internal error in the xDS server")
}

// refuse counts a refusal and returns the status the client sees.
func (g *Guard) refuse(ctx context.Context, reason string, c codes.Code, format string, args ...any) error {
	g.opts.Metrics.refused.WithLabelValues(reason).Inc()
	msg := truncate(fmt.Sprintf(format, args...), 400)
	if g.opts.Logger.V(1).Enabled() {
		addr := ""
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			addr = p.Addr.String()
		}
		g.opts.Logger.V(1).Info("refused an xDS stream", "reason", reason, "peer", addr, "message", msg)
	}
	return status.Error(c, msg)
}

// authenticate returns the identity of the connection ctx belongs to.
func (g *Guard) authenticate(ctx context.Context) (Identity, error) {
	if g.opts.Legacy {
		return Identity{Method: MethodLegacy}, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if auths := md.Get("authorization"); len(auths) > 0 {
		return g.authenticateToken(ctx, auths)
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			id, err := ServiceAccountIdentity(ti.State.VerifiedChains[0][0].Subject.CommonName, MethodCertificate)
			if err != nil {
				return Identity{}, g.refuse(ctx, ReasonUnauthenticated, codes.Unauthenticated, "client certificate: %v", err)
			}
			return id, nil
		}
	}
	return Identity{}, g.refuse(ctx, ReasonUnauthenticated, codes.Unauthenticated,
		"no identity: send a ServiceAccount token for audience %q as \"authorization: Bearer <token>\" (grpc-go: bootstrap call_creds jwt_token_file, with GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true), or present a client certificate issued by Sluice", g.audience())
}

func (g *Guard) authenticateToken(ctx context.Context, auths []string) (Identity, error) {
	if g.opts.Tokens == nil {
		return Identity{}, g.refuse(ctx, ReasonUnauthenticated, codes.Unauthenticated, "this listener accepts no tokens")
	}
	if len(auths) != 1 {
		return Identity{}, g.refuse(ctx, ReasonUnauthenticated, codes.Unauthenticated, "%d authorization headers; send one", len(auths))
	}
	scheme, token, ok := strings.Cut(auths[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return Identity{}, g.refuse(ctx, ReasonUnauthenticated, codes.Unauthenticated, "authorization header is not \"Bearer <token>\"")
	}
	id, err := g.opts.Tokens.Verify(ctx, strings.TrimSpace(token))
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return Identity{}, g.refuse(ctx, ReasonUnauthenticated, codes.Unauthenticated, "%v", err)
	case err != nil:
		return Identity{}, g.refuse(ctx, ReasonReviewFailed, codes.Unavailable, "cannot verify the token now: %v", err)
	}
	return id, nil
}

func (g *Guard) audience() string {
	if g.opts.Tokens == nil {
		return DefaultAudience
	}
	return g.opts.Tokens.Audience()
}
