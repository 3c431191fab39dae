package server

import (
	"cmp"
	"context"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sluice-dev/sluice/internal/text"
	"github.com/sluice-dev/sluice/xds/auth"
)

// streamKey identifies a stream; sotw and delta streams are numbered
// independently by go-control-plane.
type streamKey struct {
	delta bool
	id    int64
}

// sent is one response pushed on a stream and not yet acknowledged.
type sent struct {
	nonce   string
	version string
	// contents are the resources the response carried, name to content version.
	contents map[string]string
	// removed lists resources a delta response removed.
	removed []string
	// full is set for sotw responses of types that carry the full state.
	full bool
	at   time.Time
}

// typeState is what a stream subscribed to and acknowledged for one type.
type typeState struct {
	wildcard bool
	names    map[string]struct{}
	// acked maps each resource the proxy carries to its content version.
	acked        map[string]string
	ackedVersion string
	// nacked maps resources of a rejected response to the rejected content,
	// and nackedAt to when that rejection arrived.
	nacked   map[string]string
	nackedAt map[string]time.Time
	lastNack *Nack
	inflight []sent
}

func newTypeState() *typeState {
	return &typeState{names: map[string]struct{}{}, acked: map[string]string{}, nacked: map[string]string{}, nackedAt: map[string]time.Time{}}
}

func (t *typeState) subscribed(name string) bool {
	if t.wildcard {
		return true
	}
	_, ok := t.names[name]
	return ok
}

// takeSent removes and returns the response with the given nonce and every
// earlier one.
func (t *typeState) takeSent(nonce string) (sent, bool) {
	for i, s := range t.inflight {
		if s.nonce == nonce {
			t.inflight = append([]sent(nil), t.inflight[i+1:]...)
			return s, true
		}
	}
	return sent{}, false
}

// streamState is the server's view of one connected proxy stream.
type streamState struct {
	key       streamKey
	node      *corev3.Node
	connected time.Time
	types     map[string]*typeState
	// form is the stream's route form ("" default) and formWhy the reason,
	// fixed by the first node the stream sent.
	form, formWhy string
	formSet       bool
	// scope is what the stream may see: the identity its context carries
	// at its first request (authentication binds a node's identity there),
	// fixed from then on. ctx is the stream's context until then.
	scope    scope
	scopeSet bool
	ctx      context.Context
	// lastReq is the stream's last request, whose scope may still be
	// registered for its watch.
	lastReq any
	// ackedClusters are the clusters and endpoint assignments the stream
	// acknowledged at some version, indexed for Acknowledged.
	ackedClusters map[string]struct{}
}

// names counts the resource names the stream subscribed to by name, all
// types but skip.
func (s *streamState) names(skip string) int {
	n := 0
	for url, ts := range s.types {
		if url != skip {
			n += len(ts.names)
		}
	}
	return n
}

func (s *streamState) typ(url string) *typeState {
	t := s.types[url]
	if t == nil {
		t = newTypeState()
		s.types[url] = t
	}
	return t
}

// tracker implements go-control-plane's callbacks and keeps per-stream
// subscription and ACK/NACK state.
type tracker struct {
	log     logr.Logger
	metrics *metrics
	hist    *history
	now     func() time.Time
	// staleAfter is how long a stream may leave a response unanswered
	// before it is stale; zero never.
	staleAfter time.Duration
	// formOf classifies a node; nil means every stream has the default form.
	formOf func(*corev3.Node) (string, string)
	// grants is the server's current visibility; nil means everything is
	// visible (tests of the tracker alone).
	grants *atomic.Pointer[grantIndex]
	// maxNames bounds the names a stream may subscribe to; zero none.
	maxNames int
	// scopes hands each request's scope to the watch it opens.
	scopes *requestScopes

	// ackMu guards acks: per identity, how many live streams acknowledged
	// each cluster (CDS or EDS name).
	ackMu sync.RWMutex
	acks  map[auth.Identity]map[string]int

	mu      sync.Mutex
	streams map[streamKey]*streamState
	// waiters are the waits in progress; each learns which streams changed.
	waiters map[*waiter]struct{}
	// tombstones are the proxies whose stream closed, by node id, kept for
	// tombstoneTTL (see Server.Holders).
	tombstones   map[string]tombstone
	tombstoneTTL time.Duration
}

var _ serverv3.Callbacks = (*tracker)(nil)

func newTracker(log logr.Logger, m *metrics, h *history, staleAfter time.Duration) *tracker {
	return &tracker{
		log: log, metrics: m, hist: h, now: time.Now, staleAfter: staleAfter,
		streams: map[streamKey]*streamState{},
		waiters: map[*waiter]struct{}{},
		// A proxy that disconnected counts before a canary is deleted for as
		// long as a connected one may stay silent.
		tombstones: map[string]tombstone{}, tombstoneTTL: cmp.Or(staleAfter, DefaultStaleAfter),
		scopes: &requestScopes{m: map[any]watchSetup{}},
		acks:   map[auth.Identity]map[string]int{},
	}
}

// sees reports whether stream st may see typeURL/name.
func (t *tracker) sees(st *streamState, typeURL, name string) bool {
	if !st.scope.restricted || t.grants == nil {
		return true
	}
	return t.grants.Load().allows(typeURL, name, st.scope.namespace)
}

// notifyLocked tells every waiter that stream k changed; t.mu must be held.
func (t *tracker) notifyLocked(k streamKey) {
	for w := range t.waiters {
		w.dirty[k] = struct{}{}
		w.signal()
	}
}

func (t *tracker) open(ctx context.Context, k streamKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[k] = &streamState{key: k, connected: t.now(), types: map[string]*typeState{}, ctx: ctx, ackedClusters: map[string]struct{}{}}
	t.metrics.connected.Inc()
	t.notifyLocked(k)
}

func (t *tracker) close(k streamKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.streams[k]; ok {
		t.log.V(1).Info("xDS stream closed", "node", s.node.GetId(), "stream", k.id, "delta", k.delta)
		delete(t.streams, k)
		t.buryLocked(s)
		t.scopes.drop(s.lastReq)
		t.forgetAcksLocked(s)
		t.metrics.connected.Dec()
		t.notifyLocked(k)
	}
}

// OnStreamOpen records a new state-of-the-world stream.
func (t *tracker) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	t.open(ctx, streamKey{id: id})
	return nil
}

// OnStreamClosed forgets a state-of-the-world stream.
func (t *tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.close(streamKey{id: id}) }

// OnDeltaStreamOpen records a new delta stream.
func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	t.open(ctx, streamKey{delta: true, id: id})
	return nil
}

// OnDeltaStreamClosed forgets a delta stream.
func (t *tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	t.close(streamKey{delta: true, id: id})
}

// OnFetchRequest accepts REST fetches (not served: ADS only).
func (t *tracker) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error { return nil }

// OnFetchResponse ignores REST fetches.
func (t *tracker) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// OnStreamResponse remembers what a sotw response carried, as content
// versions, so its ACK can be mapped back, and sets its version_info to the
// content version of what the stream holds once it applies it
// ([heldVersion]). go-control-plane sends the very response it hands this
// callback, so the version is set here, before the response leaves.
func (t *tracker) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	typeURL := resp.GetTypeUrl()
	t.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	t.mu.Lock()
	s := t.streams[streamKey{id: id}]
	var ts *typeState
	if s != nil {
		ts = s.typ(typeURL)
	}
	t.mu.Unlock()
	if s == nil {
		return
	}
	// The stream's form, scope and subscription change only on its own
	// requests, which go-control-plane handles on the goroutine that sends
	// this response: they can be read here without the lock.
	hk := cacheKey(typeURL, s.form)
	v, ok := cacheVersion(resp.GetVersionInfo())
	contents := make(map[string]string, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		name := resourceName(r.GetValue())
		if ok {
			contents[name] = t.hist.contentAt(hk, name, v)
		} else {
			contents[name] = ""
		}
	}
	full := cache.ResourceRequiresFullStateInSotw(typeURL)
	if ok {
		resp.VersionInfo = heldVersion(t.heldAt(s, ts, typeURL, hk, v, full, contents))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ts.inflight = append(ts.inflight, sent{
		nonce: resp.GetNonce(), version: resp.GetVersionInfo(), contents: contents,
		full: full, at: t.now(),
	})
}

// heldAt returns what stream s holds of typeURL once it applies a response
// built at cache version v carrying contents: the response itself for a
// type whose responses carry the full state, else the content at v of
// every subscribed name it may see and that exists at v (the cache sends
// every such resource whose content the stream does not know yet).
func (t *tracker) heldAt(s *streamState, ts *typeState, typeURL, hk string, v uint64, full bool, contents map[string]string) map[string]string {
	if full {
		return contents
	}
	held := map[string]string{}
	for _, name := range t.subscribedNames(ts, hk) {
		if !t.sees(s, typeURL, name) {
			continue
		}
		if c := t.hist.contentAt(hk, name, v); c != "" {
			held[name] = c
		}
	}
	return held
}

// subscribedNames lists the names a subscription may hold: those it names,
// or for a wildcard every name the history of hk remembers.
func (t *tracker) subscribedNames(ts *typeState, hk string) []string {
	if ts.wildcard {
		return t.hist.names(hk)
	}
	return sortedKeys(ts.names)
}

// OnStreamDeltaResponse remembers what a delta response carried.
func (t *tracker) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	typeURL := resp.GetTypeUrl()
	contents := make(map[string]string, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		contents[r.GetName()] = r.GetVersion()
	}
	t.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[streamKey{delta: true, id: id}]
	if s == nil {
		return
	}
	ts := s.typ(typeURL)
	ts.inflight = append(ts.inflight, sent{
		nonce: resp.GetNonce(), version: resp.GetSystemVersionInfo(), contents: contents,
		removed: resp.GetRemovedResources(), at: t.now(),
	})
}

// OnStreamRequest tracks the subscription of a sotw request and applies its
// ACK or NACK.
func (t *tracker) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[streamKey{id: id}]
	if s == nil {
		return nil
	}
	t.scopeLocked(s)
	names := req.GetResourceNames()
	if err := t.admitLocked(s, req.GetTypeUrl(), len(names)); err != nil {
		return err
	}
	prev := s.lastReq
	s.lastReq = req
	t.setNodeLocked(s, req.GetNode())
	_, seen := s.types[req.GetTypeUrl()]
	ts := s.typ(req.GetTypeUrl())
	ts.names = make(map[string]struct{}, len(names))
	ts.wildcard = len(names) == 0 && cache.ResourceRequiresFullStateInSotw(req.GetTypeUrl())
	for _, n := range names {
		if n == "*" {
			ts.wildcard = true
			continue
		}
		ts.names[n] = struct{}{}
	}
	var res *resume
	if !seen && req.GetResponseNonce() == "" && req.GetVersionInfo() != "" {
		res = t.resumeLocked(s, req.GetTypeUrl(), ts, req.GetVersionInfo())
	}
	t.scopes.put(req, watchSetup{scope: s.scope, resume: res}, prev)
	if req.GetResponseNonce() != "" {
		t.answerLocked(s, req.GetTypeUrl(), ts, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	}
	for name := range ts.acked {
		if !ts.subscribed(name) {
			delete(ts.acked, name)
		}
	}
	t.notifyLocked(s.key)
	return nil
}

// OnStreamDeltaRequest tracks the subscription changes of a delta request and
// applies its ACK or NACK.
func (t *tracker) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[streamKey{delta: true, id: id}]
	if s == nil {
		return nil
	}
	t.scopeLocked(s)
	adding := len(req.GetResourceNamesSubscribe()) + len(req.GetInitialResourceVersions())
	if ts := s.types[req.GetTypeUrl()]; ts != nil {
		adding += len(ts.names)
	}
	if err := t.admitLocked(s, req.GetTypeUrl(), adding); err != nil {
		return err
	}
	t.scopes.put(req, watchSetup{scope: s.scope}, s.lastReq)
	s.lastReq = req
	t.setNodeLocked(s, req.GetNode())
	_, seen := s.types[req.GetTypeUrl()]
	ts := s.typ(req.GetTypeUrl())
	if !seen {
		ts.wildcard = len(req.GetResourceNamesSubscribe()) == 0 && cache.ResourceRequiresFullStateInSotw(req.GetTypeUrl())
		maps.Copy(ts.acked, req.GetInitialResourceVersions())
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		if n == "*" {
			ts.wildcard = true
			continue
		}
		ts.names[n] = struct{}{}
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if n == "*" {
			ts.wildcard = false
			continue
		}
		delete(ts.names, n)
		delete(ts.acked, n)
	}
	if req.GetResponseNonce() != "" {
		t.answerLocked(s, req.GetTypeUrl(), ts, req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	}
	t.notifyLocked(s.key)
	return nil
}

// resume is what a stream's first request of a type, carrying a version
// from an earlier stream, tells the cache.
type resume struct {
	// known maps each resource the stream holds to the cache's version of
	// it, so the cache sends only what changed; nil when the version did
	// not match, and the cache must answer as to a new client.
	known map[string]string
}

// resumeLocked handles the first sotw request of a type on a stream that
// presents version claimed (a proxy reconnecting, to this replica or to
// another, or after a restart). Versions are a pure function of content
// ([heldVersion]), so if claimed is the version of what this replica would
// send the stream now, the proxy holds exactly that: it counts as having
// acknowledged it at once, and is sent nothing until something changes.
// Otherwise it is sent everything, as a new client. A forged claim can only
// make the proxy's own acknowledgement arrive sooner; see docs/security.md.
// t.mu must be held.
func (t *tracker) resumeLocked(s *streamState, typeURL string, ts *typeState, claimed string) *resume {
	hk := cacheKey(typeURL, s.form)
	held, known := map[string]string{}, map[string]string{}
	for _, name := range t.subscribedNames(ts, hk) {
		if !t.sees(s, typeURL, name) {
			continue
		}
		from, c := t.hist.latest(hk, name)
		if c == "" {
			continue
		}
		held[name], known[name] = c, strconv.FormatUint(from, 10)
	}
	if heldVersion(held) != claimed {
		t.log.V(1).Info("xDS client resumes at a version this replica does not serve; sending everything",
			"node", s.node.GetId(), "stream", s.key.id, "type", typeURL, "version", shortVersion(claimed))
		return &resume{}
	}
	ts.acked, ts.ackedVersion = held, claimed
	if typeURL == resource.ClusterType || typeURL == resource.EndpointType {
		t.indexAcksLocked(s, held)
	}
	t.log.V(1).Info("xDS client resumes at the current contents; counted as acknowledged",
		"node", s.node.GetId(), "stream", s.key.id, "type", typeURL, "resources", len(held))
	return &resume{known: known}
}

// scopeLocked fixes the stream's scope at its first request; t.mu must be
// held.
func (t *tracker) scopeLocked(s *streamState) {
	if s.scopeSet {
		return
	}
	s.scope = scopeOf(auth.FromContext(s.ctx))
	s.scopeSet, s.ctx = true, nil
}

// admitLocked refuses a request of a type the server does not serve, or
// that would take the stream's subscribed names beyond the bound (names of
// typeURL after the request); t.mu must be held. Nothing is recorded for a
// refused request, and the stream ends with the error.
func (t *tracker) admitLocked(s *streamState, typeURL string, names int) error {
	if !served(typeURL) {
		return status.Errorf(codes.InvalidArgument, "type %q is not served (want one of %v)", text.Truncate(typeURL, 128), Types)
	}
	if t.maxNames > 0 && s.names(typeURL)+names > t.maxNames {
		return status.Errorf(codes.InvalidArgument, "%d resource names subscribed on one stream, at most %d", s.names(typeURL)+names, t.maxNames)
	}
	return nil
}

// served reports whether the server serves a type URL.
func served(typeURL string) bool {
	for _, t := range Types {
		if t == typeURL {
			return true
		}
	}
	return false
}

// setNodeLocked records the node of a stream and, on the first one, its
// form; t.mu must be held.
func (t *tracker) setNodeLocked(s *streamState, node *corev3.Node) {
	if node == nil {
		return
	}
	s.node = node
	if s.formSet || t.formOf == nil {
		return
	}
	s.form, s.formWhy = t.formOf(node)
	s.formSet = true
	if s.form != "" {
		t.log.V(1).Info("xDS client gets a route form of its own", "node", node.GetId(), "form", s.form, "why", s.formWhy)
	}
}

// answerLocked applies an ACK (nack false) or NACK of the response with the
// given nonce; t.mu must be held.
func (t *tracker) answerLocked(s *streamState, typeURL string, ts *typeState, nonce, detail string, nack bool) {
	resp, ok := ts.takeSent(nonce)
	if !ok {
		return
	}
	if nack {
		// A client may send megabytes of detail; what is kept (and shown on
		// Rollouts, Events and logs) is bounded.
		detail = text.Truncate(detail, text.MaxMessage)
		now := t.now()
		ts.lastNack = &Nack{TypeURL: typeURL, Version: resp.version, Message: detail, At: now, Resources: sortedKeys(resp.contents)}
		for name, c := range resp.contents {
			ts.nacked[name] = c
			ts.nackedAt[name] = now
		}
		t.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
		t.log.Info("proxy rejected xDS config; it keeps its last acknowledged config",
			"node", s.node.GetId(), "stream", s.key.id, "delta", s.key.delta, "type", typeURL,
			"rejectedVersion", resp.version, "ackedVersion", ts.ackedVersion, "error", detail)
		return
	}
	if resp.full {
		clear(ts.acked)
	}
	for name, c := range resp.contents {
		ts.acked[name] = c
		delete(ts.nacked, name)
		delete(ts.nackedAt, name)
	}
	for _, name := range resp.removed {
		delete(ts.acked, name)
		delete(ts.nacked, name)
		delete(ts.nackedAt, name)
	}
	if typeURL == resource.ClusterType || typeURL == resource.EndpointType {
		t.indexAcksLocked(s, resp.contents)
	}
	ts.ackedVersion = resp.version
	t.metrics.ackLatency.WithLabelValues(typeLabel(typeURL)).Observe(t.now().Sub(resp.at).Seconds())
}

// cacheVersion parses the version a LinearCache gives a sotw response (its
// change counter; the caches have no prefix, and the tracker knows each
// stream's form).
func cacheVersion(v string) (uint64, bool) {
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// resourceName reads field 1 (the name of a Listener, RouteConfiguration and
// Cluster, the cluster_name of a ClusterLoadAssignment) from an encoded
// resource without decoding the rest; like protobuf, the last occurrence wins.
func resourceName(b []byte) string {
	name := ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return name
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return name
		}
		if num == 1 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			name = string(v)
		}
		b = b[m:]
	}
	return name
}

// typeLabel is the metric label for a type URL.
func typeLabel(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route"
	case resource.ClusterType:
		return "cluster"
	case resource.EndpointType:
		return "endpoint"
	}
	return "other"
}
