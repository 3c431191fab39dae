// Package auth says who is at the other end of an xDS or load reporting
// connection, and what that party may claim.
//
// Every connection to Sluice's xDS ports is untrusted until proven
// otherwise. A connection proves an [Identity] with a projected
// ServiceAccount token (verified by the TokenReview API) or a client
// certificate issued by Sluice's CA; replicas prove they are Sluice itself.
// Old clients that can do neither are served on an explicitly enabled
// plaintext listener, where the namespace they claim is believed only for
// namespaces that opted in, and only for what cannot promote a canary.
package auth

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Method is how a connection proved its identity.
type Method string

// Methods.
const (
	// MethodToken: a projected ServiceAccount token verified by TokenReview.
	MethodToken Method = "token"
	// MethodCertificate: a client certificate issued by Sluice's CA.
	MethodCertificate Method = "certificate"
	// MethodPeer: another replica of Sluice (mTLS with Sluice's own
	// certificate, on the peer listener only).
	MethodPeer Method = "peer"
	// MethodLegacy: nothing proven; the plaintext listener for old clients.
	// The namespace is the node's claim, believed only where opted in.
	MethodLegacy Method = "legacy"
)

// Identity is who a connection is. Namespace and Name are those of a
// ServiceAccount for MethodToken, of the certificate's subject for
// MethodCertificate; for MethodLegacy, Namespace is the node's claim once
// bound (see Bind) and Name is empty.
type Identity struct {
	Method    Method
	Namespace string
	Name      string
}

// Authenticated reports whether the identity was proven (token, certificate
// or peer): only authenticated load can promote a canary.
func (i Identity) Authenticated() bool {
	switch i.Method {
	case MethodToken, MethodCertificate, MethodPeer:
		return true
	}
	return false
}

// String names the identity for logs and status: "token:ns/name",
// "certificate:ns/name", "peer:name", "legacy:ns".
func (i Identity) String() string {
	switch i.Method {
	case MethodPeer:
		return "peer:" + i.Name
	case MethodLegacy:
		return "legacy:" + i.Namespace
	}
	return string(i.Method) + ":" + i.Namespace + "/" + i.Name
}

type contextKey struct{}

// boundKey carries the identity a stream's node was bound to (see
// [Guard]): set once, at the stream's first message naming a node.
type boundKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the identity a connection proved, if any was set. On
// the context of a stream a [Guard] admitted, it returns the identity bound
// at the stream's first message naming a node (for a legacy stream, the
// namespace comes from there), and before that the identity the connection
// proved.
func FromContext(ctx context.Context) (Identity, bool) {
	if b, ok := ctx.Value(boundKey{}).(*atomic.Pointer[Identity]); ok {
		if id := b.Load(); id != nil {
			return *id, true
		}
	}
	id, ok := ctx.Value(contextKey{}).(Identity)
	return id, ok
}

// withBinding returns ctx carrying id and a slot for the identity its node
// binds to, and that slot.
func withBinding(ctx context.Context, id Identity) (context.Context, *atomic.Pointer[Identity]) {
	b := new(atomic.Pointer[Identity])
	return context.WithValue(NewContext(ctx, id), boundKey{}, b), b
}

// NodeNamespaceKey is the node metadata field in which a client names its
// namespace (a string). Authenticated clients may omit it; if present it
// must equal the identity's namespace. Legacy clients must set it.
const NodeNamespaceKey = "namespace"

// ErrNamespaceMismatch is returned by Bind when a node claims a namespace
// its identity does not belong to.
var ErrNamespaceMismatch = errors.New("node claims a namespace its identity does not belong to")

// ErrNoNamespace is returned by Bind when a legacy node names no namespace.
var ErrNoNamespace = errors.New("node names no namespace")

// NodeNamespace returns the namespace a node claims in its metadata, or "".
func NodeNamespace(node *corev3.Node) string {
	return node.GetMetadata().GetFields()[NodeNamespaceKey].GetStringValue()
}

// Bind checks a node against the identity of its connection and returns
// the identity the node's requests and reports act as. An authenticated
// identity keeps its own namespace; a node claiming another is refused. A
// legacy identity takes the node's claimed namespace, which must be set;
// whether that namespace may use the legacy listener is the caller's check.
func (i Identity) Bind(node *corev3.Node) (Identity, error) {
	claim := NodeNamespace(node)
	switch {
	case i.Method == MethodLegacy:
		if claim == "" {
			return Identity{}, fmt.Errorf("%w: legacy clients must set node metadata %q", ErrNoNamespace, NodeNamespaceKey)
		}
		return Identity{Method: MethodLegacy, Namespace: claim}, nil
	case claim != "" && claim != i.Namespace:
		return Identity{}, fmt.Errorf("%w: %s claims namespace %q", ErrNamespaceMismatch, i, claim)
	}
	return i, nil
}
