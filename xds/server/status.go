package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Nack is the last rejection of a response by a proxy.
type Nack struct {
	// TypeURL of the rejected response.
	TypeURL string
	// Version is the version_info (sotw) or system_version_info (delta) of the
	// rejected response.
	Version string
	// Message is the client's error_detail message.
	Message string
	// At is when the NACK arrived.
	At time.Time
	// Resources names the resources of the rejected response, sorted.
	Resources []string
}

// TypeStatus is what one stream subscribed to and carries for one type.
type TypeStatus struct {
	// TypeURL of the resources.
	TypeURL string
	// Wildcard is set when the stream subscribed to every resource of the type.
	Wildcard bool
	// Subscribed lists the resource names subscribed to by name, sorted.
	Subscribed []string
	// AckedVersion is the xDS version of the last response the proxy ACKed.
	AckedVersion string
	// Acked maps each resource the proxy carries to its content version.
	Acked map[string]string
	// Pending is the number of responses sent and not yet answered.
	Pending int
	// LastNack is the last rejection, nil if none.
	LastNack *Nack
}

// ProxyStatus describes one connected xDS stream and the proxy behind it.
type ProxyStatus struct {
	NodeID           string
	Cluster          string
	UserAgentName    string
	UserAgentVersion string
	ClientFeatures   []string
	// Delta is set for incremental xDS streams.
	Delta bool
	// StreamID numbers the stream (separately for sotw and delta).
	StreamID    int64
	ConnectedAt time.Time
	// Types is sorted by type URL.
	Types []TypeStatus
	// Form is the route configuration form the proxy gets ("" for the
	// default form), and FormReason why, from its node.
	Form       string
	FormReason string
	// Limits lists what this proxy cannot express in the route
	// configurations it subscribed to, and what it gets instead, sorted.
	Limits []string
	// Identity names who the stream proved to be (auth.Identity.String),
	// empty for a stream without an identity; Namespace is the identity's
	// namespace, whose grants decide what the stream sees.
	Identity  string
	Namespace string
}

// Proxies returns the status of every connected stream, sorted by node id,
// then sotw before delta, then stream id.
func (s *Server) Proxies() []ProxyStatus {
	t := s.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ProxyStatus, 0, len(t.streams))
	for _, st := range t.streams {
		p := ProxyStatus{
			NodeID:           st.node.GetId(),
			Cluster:          st.node.GetCluster(),
			UserAgentName:    st.node.GetUserAgentName(),
			UserAgentVersion: st.node.GetUserAgentVersion(),
			ClientFeatures:   append([]string(nil), st.node.GetClientFeatures()...),
			Delta:            st.key.delta,
			StreamID:         st.key.id,
			ConnectedAt:      st.connected,
			Form:             st.form,
			FormReason:       st.formWhy,
		}
		if st.scope.restricted {
			p.Identity, p.Namespace = st.scope.id.String(), st.scope.namespace
		}
		for url, ts := range st.types {
			tsOut := TypeStatus{
				TypeURL:      url,
				Wildcard:     ts.wildcard,
				Subscribed:   sortedKeys(ts.names),
				AckedVersion: ts.ackedVersion,
				Acked:        maps.Clone(ts.acked),
				Pending:      len(ts.inflight),
			}
			if ts.lastNack != nil {
				n := *ts.lastNack
				tsOut.LastNack = &n
			}
			p.Types = append(p.Types, tsOut)
		}
		sort.Slice(p.Types, func(i, j int) bool { return p.Types[i].TypeURL < p.Types[j].TypeURL })
		if rt := st.types[resource.RouteType]; rt != nil {
			s.pubMu.RLock()
			limits := s.formLimits[st.form]
			if st.form == "" {
				limits = s.defaultLimits
			}
			for name, ls := range limits {
				if rt.subscribed(name) && t.sees(st, resource.RouteType, name) {
					p.Limits = append(p.Limits, ls...)
				}
			}
			s.pubMu.RUnlock()
			sort.Strings(p.Limits)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.NodeID != b.NodeID {
			return a.NodeID < b.NodeID
		}
		if a.Delta != b.Delta {
			return !a.Delta
		}
		return a.StreamID < b.StreamID
	})
	return out
}

// target is one resource content to be carried by its subscribers; byForm
// names, for streams of a form, the content they carry instead. owner, when
// set, is the namespace of the service whose step waits on the target: a
// rejection by a proxy of another namespace (a consumer) holds the wait's
// result only up to the stale bound.
type target struct {
	typeURL, name, version string
	byForm                 map[string]string
	owner                  string
}

// want returns the content a stream of form f must carry.
func (tg target) want(f string) string {
	if v, ok := tg.byForm[f]; ok {
		return v
	}
	return tg.version
}

// progress names the proxies subscribed to a set of targets by state. Each
// list is sorted and free of duplicates; a proxy with several streams appears
// once per state its streams are in.
type progress struct {
	acked, pending, nacked, stale []string
	// silentSince says, for the stale proxies that went silent, when the
	// oldest response they leave unanswered was sent.
	silentSince map[string]time.Time
}

// syncState is where one stream stands on a set of targets.
type syncState int

const (
	stateAcked syncState = iota
	stateNacked
	statePending
	// stateStale is a pending stream that has left a response unanswered
	// for longer than the tracker's staleAfter: a hung process or a
	// half-open connection. It is reported, not waited for.
	stateStale
)

// proxyName is how a stream is named in results: its node id, or the stream
// number when the proxy sent no node id.
func proxyName(st *streamState) string {
	if id := st.node.GetId(); id != "" {
		return id
	}
	kind := "sotw"
	if st.key.delta {
		kind = "delta"
	}
	return fmt.Sprintf("<%s stream %d>", kind, st.key.id)
}

// classify tells whether st subscribed to any target it may see and, if so,
// whether it carries every target (acked), rejected one and waits on none
// (nacked), or still lacks one (pending). A pending stream silent for longer
// than the stale bound is stale; so is a stream of a consumer namespace whose
// only rejections are older than that bound.
func (t *tracker) classify(st *streamState, targets []target) (syncState, bool) {
	now := t.now()
	state, involved, consumerNack := stateAcked, false, false
	for _, tg := range targets {
		ts := st.types[tg.typeURL]
		if ts == nil || !ts.subscribed(tg.name) || !t.sees(st, tg.typeURL, tg.name) {
			continue
		}
		involved = true
		want := tg.want(st.form)
		switch {
		case ts.acked[tg.name] == want:
		case ts.nacked[tg.name] == want:
			if t.consumerNackExpired(st, tg, ts, now) {
				consumerNack = true
				continue
			}
			state = max(state, stateNacked)
		default:
			state = statePending
		}
	}
	switch {
	case state == statePending && t.staleAfter > 0 && st.silentSince(now) > t.staleAfter:
		state = stateStale
	case state == stateAcked && consumerNack:
		state = stateStale
	}
	return state, involved
}

// consumerNackExpired reports whether st's rejection of tg comes from a
// consumer namespace (a proxy with an identity outside tg.owner) and is
// older than the stale bound: it no longer holds the owner's step.
func (t *tracker) consumerNackExpired(st *streamState, tg target, ts *typeState, now time.Time) bool {
	if tg.owner == "" || !st.scope.restricted || st.scope.namespace == tg.owner || t.staleAfter <= 0 {
		return false
	}
	at, ok := ts.nackedAt[tg.name]
	return ok && now.Sub(at) > t.staleAfter
}

// silentSince is how long the oldest response the stream has not answered
// has been waiting; zero when it answered everything.
func (s *streamState) silentSince(now time.Time) time.Duration {
	oldest := s.oldestUnanswered()
	if oldest.IsZero() {
		return 0
	}
	return now.Sub(oldest)
}

// oldestUnanswered is when the oldest response the stream has not answered
// was sent; zero when it answered everything.
func (s *streamState) oldestUnanswered() time.Time {
	var oldest time.Time
	for _, ts := range s.types {
		if len(ts.inflight) > 0 && (oldest.IsZero() || ts.inflight[0].at.Before(oldest)) {
			oldest = ts.inflight[0].at
		}
	}
	return oldest
}

// progressOf names the streams of states by state; t.mu must be held.
func (t *tracker) progressOf(states map[streamKey]syncState) progress {
	sets := [4]map[string]struct{}{{}, {}, {}, {}}
	var since map[string]time.Time
	for k, s := range states {
		st := t.streams[k]
		if st == nil {
			continue
		}
		name := proxyName(st)
		sets[s][name] = struct{}{}
		if from := st.oldestUnanswered(); s == stateStale && !from.IsZero() {
			if since == nil {
				since = map[string]time.Time{}
			}
			if at, ok := since[name]; !ok || from.Before(at) {
				since[name] = from
			}
		}
	}
	return progress{acked: sortedKeys(sets[stateAcked]), nacked: sortedKeys(sets[stateNacked]),
		pending: sortedKeys(sets[statePending]), stale: sortedKeys(sets[stateStale]), silentSince: since}
}

// progressLocked classifies every stream; t.mu must be held.
func (t *tracker) progressLocked(targets []target) progress {
	states := map[streamKey]syncState{}
	for k, st := range t.streams {
		if s, ok := t.classify(st, targets); ok {
			states[k] = s
		}
	}
	return t.progressOf(states)
}

// Synced counts the connected proxies (distinct node ids) subscribed to the
// resource typeURL/name by whether they carry the content version (acked),
// rejected it (nacked), or neither yet (pending). A proxy that carries a
// different content than version is pending. It does not block.
func (s *Server) Synced(typeURL, name, version string) (acked, pending, nacked int) {
	t := s.tracker
	tg := s.targetOf(typeURL, name, version)
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.progressLocked([]target{tg})
	return len(p.acked), len(p.pending), len(p.nacked)
}

// ErrSuperseded is returned by WaitAcked when the awaited content is no
// longer the published content of the resource.
var ErrSuperseded = errors.New("content superseded by a later update")

// WaitAcked blocks until no connected proxy subscribed to typeURL/name is
// pending on the content version: each has acknowledged it, rejected it, or
// closed its stream. It returns the node ids that carry the version and those
// that rejected it (sorted). With no subscriber it returns at once with empty
// lists, so a caller that needs proxies must check acked.
//
// It fails with ErrSuperseded as soon as version is no longer what the server
// publishes for the resource (a later Update changed or removed it), and with
// the context's error, naming the pending proxies, if ctx ends first; both
// return what is known so far.
//
// An ACK means the proxy accepted the content; grpc-go applies it to its
// channel a moment later (milliseconds), so a caller that needs traffic to
// have moved must observe the traffic.
func (s *Server) WaitAcked(ctx context.Context, typeURL, name, version string) (acked, nacked []string, err error) {
	sy, err := s.WaitSynced(ctx, typeURL, name, version)
	return sy.Acked, sy.Nacked, err
}

// Sync is where the proxies subscribed to one resource stand on one content
// version; each list is sorted.
type Sync struct {
	// Acked carry the version; Nacked rejected it and keep their last
	// acknowledged content.
	Acked, Nacked []string
	// Stale have left a response unanswered for longer than
	// Options.StaleAfter: they are not waited for (their routes are
	// unknown).
	Stale []string
	// SilentSince says, for stale proxies that went silent (not those named
	// stale for an old rejection), when the oldest response they leave
	// unanswered was sent.
	SilentSince map[string]time.Time
}

// WaitSynced is WaitAcked that also names the stale proxies it stopped
// waiting for: a proxy that has not answered a response for
// Options.StaleAfter (a hung process, a half-open connection) never holds a
// wait longer than that bound.
func (s *Server) WaitSynced(ctx context.Context, typeURL, name, version string) (Sync, error) {
	return s.WaitSyncedFor(ctx, "", typeURL, name, version)
}

// WaitSyncedFor is WaitSynced on behalf of a service of namespace owner: a
// proxy of another namespace (a consumer granted the service) that rejected
// the content is Nacked only until its rejection is older than
// Options.StaleAfter; then it is named Stale instead, and no longer holds
// the service's step. Proxies of owner's namespace, and proxies without an
// identity, stay Nacked. An empty owner is WaitSynced.
func (s *Server) WaitSyncedFor(ctx context.Context, owner, typeURL, name, version string) (Sync, error) {
	current := func() error {
		if v, ok := s.Version(typeURL, name); ok && v == version {
			return nil
		}
		if typeURL == resource.RouteType && s.heldVersion(name, version) {
			return nil // published once its subscribers loaded its clusters
		}
		return ErrSuperseded
	}
	tg := s.targetOf(typeURL, name, version)
	tg.owner = owner
	p, err := s.tracker.wait(ctx, []target{tg}, true, current)
	if err != nil {
		err = fmt.Errorf("wait for %s %q content %s: %w", typeLabel(typeURL), name, shortVersion(version), err)
	}
	return Sync{Acked: p.acked, Nacked: p.nacked, Stale: p.stale, SilentSince: p.silentSince}, err
}

// waiter follows a wait in progress: the tracker records which streams
// changed, so the wait re-classifies only those and stays linear in the
// number of ACKs rather than quadratic.
type waiter struct {
	dirty map[streamKey]struct{}
	wake  chan struct{}
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// wait blocks until no stream is pending on targets; when nackDone is false a
// stream that rejected a target also counts as pending. If valid is not nil it
// is checked on every change and publication, and its error ends the wait.
func (t *tracker) wait(ctx context.Context, targets []target, nackDone bool, valid func() error) (progress, error) {
	return t.waitBy(ctx, func(st *streamState) (syncState, bool) { return t.classify(st, targets) }, nackDone, valid, 0)
}

// waitBy is [tracker.wait] with the state of each stream given by classify
// (called with t.mu held; false means the stream is not involved), and
// pending streams classified again at least every recheck (if > 0), for a
// classify that changes with time alone.
func (t *tracker) waitBy(ctx context.Context, classify func(*streamState) (syncState, bool), nackDone bool, valid func() error, recheckEvery time.Duration) (progress, error) {
	w := &waiter{dirty: map[streamKey]struct{}{}, wake: make(chan struct{}, 1)}
	states := map[streamKey]syncState{}
	blocking := 0
	blocks := func(s syncState) bool { return s == statePending || (!nackDone && s == stateNacked) }
	set := func(k streamKey, s syncState, involved bool) {
		if old, ok := states[k]; ok && blocks(old) {
			blocking--
		}
		if !involved {
			delete(states, k)
			return
		}
		states[k] = s
		if blocks(s) {
			blocking++
		}
	}
	t.mu.Lock()
	t.waiters[w] = struct{}{}
	for k, st := range t.streams {
		s, ok := classify(st)
		set(k, s, ok)
	}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.waiters, w)
		t.mu.Unlock()
	}()
	result := func() progress {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.progressOf(states)
	}
	// A pending stream turns stale with time alone: look again at a fraction
	// of the bound.
	var recheck <-chan time.Time
	if t.staleAfter > 0 || recheckEvery > 0 {
		every := recheckEvery
		if t.staleAfter > 0 && (every <= 0 || t.staleAfter/10 < every) {
			every = t.staleAfter / 10
		}
		tick := time.NewTicker(max(every, 10*time.Millisecond))
		defer tick.Stop()
		recheck = tick.C
	}
	for {
		if valid != nil {
			if err := valid(); err != nil {
				return result(), err
			}
		}
		if blocking == 0 {
			return result(), nil
		}
		select {
		case <-recheck:
			t.mu.Lock()
			for k, s := range states {
				if s == statePending {
					w.dirty[k] = struct{}{}
				}
			}
			t.mu.Unlock()
		case <-ctx.Done():
			p := result()
			waiting := p.pending
			if !nackDone {
				waiting = append(append([]string(nil), p.pending...), p.nacked...)
			}
			return p, fmt.Errorf("%d proxies have not acknowledged (%s): %w", len(waiting), strings.Join(waiting, ", "), ctx.Err())
		case <-w.wake:
		}
		t.mu.Lock()
		for k := range w.dirty {
			if st := t.streams[k]; st != nil {
				s, ok := classify(st)
				set(k, s, ok)
			} else {
				set(k, 0, false)
			}
		}
		clear(w.dirty)
		t.mu.Unlock()
	}
}

// poke wakes every waiter after a publication, so it re-checks validity.
func (t *tracker) poke() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.waiters {
		w.signal()
	}
}

// shortVersion abbreviates a content version for messages.
func shortVersion(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RouteLimits counts, per limit (what a client form cannot express and what
// it gets instead), this replica's streams subscribed to one of the route
// configurations names whose form has that limit there: the clients that
// cannot follow all of a service's strategy.
func (s *Server) RouteLimits(names []string) map[string]int {
	t := s.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	out := map[string]int{}
	for _, st := range t.streams {
		rt := st.types[resource.RouteType]
		if rt == nil {
			continue
		}
		limits := s.formLimits[st.form]
		if st.form == "" {
			limits = s.defaultLimits
		}
		seen := map[string]bool{}
		for _, name := range names {
			if !rt.subscribed(name) || !t.sees(st, resource.RouteType, name) {
				continue
			}
			for _, l := range limits[name] {
				if !seen[l] {
					seen[l] = true
					out[l]++
				}
			}
		}
	}
	return out
}
