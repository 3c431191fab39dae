package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/translate"
)

// Visibility.
//
// A stream whose context carries an auth.Identity sees only the resources
// its namespace may see: those whose Grants allow it (a service's own
// namespace and its consumers; a sidecar route configuration's namespace).
// Anything else is answered as if it did not exist, for wildcard and named
// subscriptions alike, in sotw and delta. A stream without an identity (an
// in-process client, or a server that does not require one) sees
// everything.
//
// The filter is applied where the cache computes a stream's response: each
// restricted watch hands the cache a subscription narrowed to the visible
// names, so responses are built from the same serialized resources as
// before (one encoding per change, never per proxy), and the cache's own
// bookkeeping (what a stream knows, what it must be told was removed) stays
// exact. A narrowed subscription also names its namespace's sentinel: a
// resource name that never exists, touched whenever what that namespace may
// see changes, so that a watch learns of newly granted resources.

// Grants says, per type URL and resource name, whose proxies may see each
// resource.
type Grants map[string]map[string]translate.Access

// GrantsOf returns the access of every translated resource, ready for
// [Server.Publish].
func GrantsOf(res translate.Resources) Grants {
	out := Grants{}
	for _, t := range Types {
		out[t] = res.AccessByType(t)
	}
	return out
}

// sentinelPrefix starts the names of sentinels; no resource name holds a
// NUL byte.
const sentinelPrefix = "\x00scope/"

// sentinelAll is touched when a resource granted to every namespace
// changes visibility.
const sentinelAll = sentinelPrefix + "*"

// sentinel is the name a namespace's narrowed subscriptions watch.
func sentinel(namespace string) string { return sentinelPrefix + namespace }

// scope is what a stream may see.
type scope struct {
	// restricted is false for a stream without an identity: it sees all.
	restricted bool
	// namespace is the identity's namespace.
	namespace string
	id        auth.Identity
}

// scopeOf returns the scope of a stream whose context carried id (ok false:
// none).
func scopeOf(id auth.Identity, ok bool) scope {
	if !ok {
		return scope{}
	}
	return scope{restricted: true, namespace: id.Namespace, id: id}
}

// grantIndex is one publication's grants. It is immutable once published;
// the visible sets are built on first use, once per type and namespace.
type grantIndex struct {
	grants Grants

	mu      sync.Mutex
	visible map[[2]string]map[string]struct{}
}

func newGrantIndex(g Grants) *grantIndex {
	return &grantIndex{grants: g, visible: map[[2]string]map[string]struct{}{}}
}

// allows reports whether a proxy of namespace may see typeURL/name.
func (g *grantIndex) allows(typeURL, name, namespace string) bool {
	a, ok := g.grants[typeURL][name]
	return ok && a.Allows(namespace)
}

// visibleSet returns the names of typeURL that namespace may see, with the
// sentinels its watches wait on. Callers must not modify it.
func (g *grantIndex) visibleSet(typeURL, namespace string) map[string]struct{} {
	k := [2]string{typeURL, namespace}
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.visible[k]; ok {
		return v
	}
	v := map[string]struct{}{sentinel(namespace): {}, sentinelAll: {}}
	for name, a := range g.grants[typeURL] {
		if a.Allows(namespace) {
			v[name] = struct{}{}
		}
	}
	g.visible[k] = v
	return v
}

// touched returns, per type URL, the sentinels to touch when the grants
// move from old to next: those of every namespace that gains or loses
// sight of a resource, or whose resource's grant changed.
func touched(old, next Grants) map[string][]string {
	out := map[string][]string{}
	for _, t := range Types {
		set := map[string]struct{}{}
		mark := func(a translate.Access) {
			set[sentinel(a.Namespace)] = struct{}{}
			if a.Consumers.All {
				set[sentinelAll] = struct{}{}
			}
			for _, ns := range a.Consumers.Namespaces {
				set[sentinel(ns)] = struct{}{}
			}
		}
		for name, a := range next[t] {
			if b, ok := old[t][name]; !ok || !sameAccess(a, b) {
				mark(a)
				if ok {
					mark(b)
				}
			}
		}
		for name, b := range old[t] {
			if _, ok := next[t][name]; !ok {
				mark(b)
			}
		}
		out[t] = sortedKeys(set)
	}
	return out
}

func sameAccess(a, b translate.Access) bool {
	if a.Namespace != b.Namespace || a.Consumers.All != b.Consumers.All || len(a.Consumers.Namespaces) != len(b.Consumers.Namespaces) {
		return false
	}
	for i, ns := range a.Consumers.Namespaces {
		if b.Consumers.Namespaces[i] != ns {
			return false
		}
	}
	return true
}

// checkGrants reports resources of r without a grant, and grants of
// resources r does not hold.
func checkGrants(r Resources, g Grants) error {
	var missing, extra []string
	for _, t := range Types {
		for name := range r[t] {
			if _, ok := g[t][name]; !ok {
				missing = append(missing, typeLabel(t)+" "+name)
			}
		}
		for name := range g[t] {
			if _, ok := r[t][name]; !ok {
				extra = append(extra, typeLabel(t)+" "+name)
			}
		}
	}
	if len(missing)+len(extra) == 0 {
		return nil
	}
	return fmt.Errorf("grants do not match the resources: %d resources without a grant %v, %d grants without a resource %v",
		len(missing), firstFew(missing), len(extra), firstFew(extra))
}

// firstFew bounds a list quoted in an error.
func firstFew(s []string) []string {
	if len(s) > 5 {
		return append(s[:5:5], "...")
	}
	return s
}

// scopedSub narrows a stream's subscription to what its namespace may see.
// The cache reads it under its own lock; the names are rebuilt when the
// grants change.
type scopedSub struct {
	inner     cache.Subscription
	typeURL   string
	namespace string
	grants    *atomic.Pointer[grantIndex]

	mu    sync.Mutex
	idx   *grantIndex
	names map[string]struct{}
}

var _ cache.Subscription = (*scopedSub)(nil)

// ReturnedResources is what the stream was sent and knows.
func (s *scopedSub) ReturnedResources() map[string]string { return s.inner.ReturnedResources() }

// IsWildcard is false: a narrowed wildcard lists what it may see.
func (s *scopedSub) IsWildcard() bool { return false }

// SubscribedResources is the subscription narrowed to the visible names,
// with the sentinels.
func (s *scopedSub) SubscribedResources() map[string]struct{} {
	idx := s.grants.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names != nil && s.idx == idx {
		return s.names
	}
	s.idx = idx
	if s.inner.IsWildcard() {
		s.names = idx.visibleSet(s.typeURL, s.namespace)
		return s.names
	}
	want := s.inner.SubscribedResources()
	names := make(map[string]struct{}, len(want)+2)
	names[sentinel(s.namespace)] = struct{}{}
	names[sentinelAll] = struct{}{}
	for name := range want {
		if idx.allows(s.typeURL, name, s.namespace) {
			names[name] = struct{}{}
		}
	}
	s.names = names
	return names
}

// scopedCache hands the caches a narrowed subscription for every request
// of a restricted stream. The tracker registers each request's scope just
// before the go-control-plane server asks for its watch.
type scopedCache struct {
	inner  cache.Cache
	scopes *requestScopes
	grants *atomic.Pointer[grantIndex]
}

var _ cache.Cache = (*scopedCache)(nil)

// CreateWatch opens a sotw watch narrowed to the request's scope. A stream
// that resumes at the current contents (see [tracker.resumeLocked]) has its
// subscription told what it holds, so nothing is sent again; one that
// presents a version this replica does not serve is answered as a new
// client, even with nothing to send.
func (c *scopedCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	setup, ok := c.scopes.take(req)
	if !ok {
		return nil, fmt.Errorf("no scope recorded for a %s request", typeLabel(req.GetTypeUrl()))
	}
	if r := setup.resume; r != nil {
		// go-control-plane hands the cache a copy of the stream's sotw
		// subscription, sharing the map of what the stream was sent with
		// the stream's own copy; on a type's first request it is empty.
		// Filling it tells the cache and the stream alike what the proxy
		// holds.
		if known := sub.ReturnedResources(); r.known != nil && known != nil && len(known) == 0 {
			maps.Copy(known, r.known)
		} else {
			req = withoutVersion(req)
		}
	}
	return c.inner.CreateWatch(req, c.narrow(setup.scope, req.GetTypeUrl(), sub), out)
}

// withoutVersion is req with no version_info: the cache answers it even
// with nothing to send, as the first request of a new client.
func withoutVersion(req *cache.Request) *cache.Request {
	return &cache.Request{
		Node: req.GetNode(), ResourceNames: req.GetResourceNames(), ResourceLocators: req.GetResourceLocators(),
		TypeUrl: req.GetTypeUrl(), ResponseNonce: req.GetResponseNonce(), ErrorDetail: req.GetErrorDetail(),
	}
}

// CreateDeltaWatch opens a delta watch narrowed to the request's scope.
func (c *scopedCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	setup, ok := c.scopes.take(req)
	if !ok {
		return nil, fmt.Errorf("no scope recorded for a %s request", typeLabel(req.GetTypeUrl()))
	}
	return c.inner.CreateDeltaWatch(req, c.narrow(setup.scope, req.GetTypeUrl(), sub), out)
}

// narrow returns the subscription a watch of a stream of scope sc gets:
// sub itself for a stream without an identity, else sub narrowed to its
// namespace.
func (c *scopedCache) narrow(sc scope, typeURL string, sub cache.Subscription) cache.Subscription {
	if !sc.restricted {
		return sub
	}
	return &scopedSub{inner: sub, typeURL: typeURL, namespace: sc.namespace, grants: c.grants}
}

// Fetch is not served: REST fetches carry no stream identity.
func (c *scopedCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("xDS fetch is not served")
}

// watchSetup is what the tracker learned of a request that the watch it
// opens needs.
type watchSetup struct {
	scope scope
	// resume is set for the first sotw request of a type that presents a
	// version.
	resume *resume
}

// requestScopes remembers the setup of requests between the tracker's
// callback and the watch they open. A stream holds at most one entry: the
// tracker drops its previous request's entry when the next arrives, and
// the last when the stream closes.
type requestScopes struct {
	mu sync.Mutex
	m  map[any]watchSetup
}

func (r *requestScopes) put(req any, sc watchSetup, previous any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if previous != nil {
		delete(r.m, previous)
	}
	r.m[req] = sc
}

func (r *requestScopes) drop(req any) {
	if req == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, req)
}

func (r *requestScopes) take(req any) (watchSetup, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sc, ok := r.m[req]
	delete(r.m, req)
	return sc, ok
}
