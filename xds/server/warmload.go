package server

import (
	"cmp"
	"errors"
	"maps"
	"slices"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Loaded before routed.
//
// A proxyless gRPC client loads the clusters a route configuration names
// (CDS, then EDS) before it applies that configuration; grpc-go's
// dependency manager holds the whole configuration back until they are
// loaded. If a newer configuration arrives meanwhile, the client applies
// only the newer one. So a warm-up route (router/warmup.go) protects the
// first requests to a cluster only if the client finished loading the
// cluster before the configuration that sends traffic to it arrives; if
// not, the client names the cluster in its route table and in its balancer
// in one step, and the requests picked for it before the balancer has a
// child for it fail ("unknown cluster selected for RPC").
//
// So a route configuration that sends traffic to a cluster some subscriber
// does not send traffic to yet, while the content published now names that
// cluster, is held back (bounded by the ack timeout) until each such
// subscriber carries the published content and has acknowledged (or
// rejected) the cluster and its endpoints. A subscriber that has not
// answered the published content and leaves a response unanswered beyond
// warmAnswerGrace is idle and not waited for. Only that route
// configuration waits: the update publishes everything else at once and
// returns, and the held content is published when its subscribers are
// ready (releaseHeld), unless a later update replaced it.

// warmStep is one route configuration about to change, for one form.
type warmStep struct {
	// cur is the content published now, and named the clusters it names,
	// each true if it has endpoints (EDS) of its name.
	cur   string
	named map[string]bool
	// traffic are the clusters the next content sends traffic to.
	traffic []string
}

// warmPlan maps a form ("" default) to its route configurations about to
// change.
type warmPlan map[string]map[string]warmStep

// warmPlanOf lists the route changes of c and fcs whose next content sends
// traffic to a cluster the published content names.
func (s *Server) warmPlanOf(c checked, fcs map[string]formChecked) warmPlan {
	plan := warmPlan{}
	add := func(form string, pub map[string]string, next map[string]proto.Message, versions map[string]string) {
		for name, v := range versions {
			cur, ok := pub[name]
			if !ok || cur == v {
				continue
			}
			named, known := s.refs.getNamed(cur)
			if !known || len(named) == 0 {
				continue
			}
			rc, ok := next[name].(*routev3.RouteConfiguration)
			if !ok {
				continue
			}
			step := warmStep{cur: cur, named: map[string]bool{}, traffic: trafficClusters(rc)}
			for _, n := range named {
				_, eds := c.versions[resource.EndpointType][n]
				step.named[n] = eds
			}
			if plan[form] == nil {
				plan[form] = map[string]warmStep{}
			}
			plan[form][name] = step
		}
	}
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	add("", s.published[resource.RouteType], c.resources[resource.RouteType], c.versions[resource.RouteType])
	for f, fc := range fcs {
		add(f, s.formPublished[f], fc.routes, fc.versions)
	}
	return plan
}

// warmLoaded classifies a stream on a warm plan: pending while a route
// change would send it traffic to a cluster the published content names
// and it has not loaded yet. t.mu must be held.
func (t *tracker) warmLoaded(st *streamState, plan warmPlan, refs *routeRefs) (syncState, bool) {
	rts := st.types[resource.RouteType]
	steps := plan[st.form]
	if rts == nil || len(steps) == 0 {
		return 0, false
	}
	state, involved := stateAcked, false
	for name, step := range steps {
		if !rts.subscribed(name) || !t.sees(st, resource.RouteType, name) {
			continue
		}
		acked, ok := rts.acked[name]
		if !ok {
			// A client that carries no content yet loads whatever it gets.
			continue
		}
		before, known := refs.get(acked)
		if !known {
			continue
		}
		var need []string
		for _, c := range step.traffic {
			if _, named := step.named[c]; named && !slices.Contains(before, c) && t.sees(st, resource.ClusterType, c) {
				need = append(need, c)
			}
		}
		if len(need) == 0 {
			continue
		}
		involved = true
		switch {
		case rts.nacked[name] == step.cur:
			// It rejected the content that names the clusters: it keeps
			// routing by what it has, and loads nothing more.
			continue
		case acked != step.cur:
			// It has not answered the content that names the clusters. An
			// active client answers within milliseconds; one that leaves it
			// unanswered longer is idle (an idle gRPC C-core client reads
			// its stream only while it makes calls) and sends no request
			// that could fail meanwhile: it is not waited for.
			if st.silentSince(t.now()) < warmAnswerGrace {
				state = statePending
			}
			continue
		}
		for _, c := range need {
			if !loaded(st.types[resource.ClusterType], c) ||
				(step.named[c] && t.sees(st, resource.EndpointType, c) && !loaded(st.types[resource.EndpointType], c)) {
				state = statePending
			}
		}
	}
	if state == statePending && t.staleAfter > 0 && st.silentSince(t.now()) > t.staleAfter {
		state = stateStale
	}
	return state, involved
}

// warmAnswerGrace is how long a proxy may leave a response unanswered and
// still be waited for, while it has not answered the route content that
// names a cluster, before traffic moves to that cluster.
const warmAnswerGrace = 500 * time.Millisecond

// loaded reports whether a type's subscription acknowledged or rejected name.
func loaded(ts *typeState, name string) bool {
	if ts == nil {
		return false
	}
	if _, ok := ts.acked[name]; ok {
		return true
	}
	_, ok := ts.nacked[name]
	return ok
}

// heldKey names a route configuration of a form ("" default).
type heldKey struct{ form, name string }

// heldRoute is a route configuration whose next content is held back until
// its subscribers loaded the clusters it starts sending them traffic to.
type heldRoute struct {
	msg     proto.Message
	version string
	step    warmStep
	// since is when it was first held (for this or an earlier content):
	// the hold ends at since + the ack timeout at the latest, however
	// often the content is published again.
	since time.Time
}

// holdWarm decides, for each route change of plan, whether it waits: while
// some subscriber still loads a cluster the change sends it traffic to, the
// change is held (at most the ack timeout from when it was first held) and
// published by releaseHeld once they loaded it; every other change, of
// this service or any other, is published at once. It returns the held
// route configurations. s.updateMu must be held.
func (s *Server) holdWarm(plan warmPlan, c checked, fcs map[string]formChecked) map[heldKey]heldRoute {
	now := time.Now()
	next := map[heldKey]heldRoute{}
	for form, steps := range plan {
		for name, step := range steps {
			k := heldKey{form: form, name: name}
			if !s.warmPending(form, name, step) {
				continue
			}
			since := now
			if prev, ok := s.held[k]; ok {
				since = prev.since
			}
			if now.Sub(since) >= s.ackTimeout {
				s.log.Info("proxies did not load the clusters a route is about to send traffic to in time; going on anyway",
					"route", name, "form", form, "timeout", s.ackTimeout.String())
				continue
			}
			h := heldRoute{step: step, since: since}
			if form == "" {
				h.msg, h.version = c.resources[resource.RouteType][name], c.versions[resource.RouteType][name]
			} else {
				h.msg, h.version = fcs[form].routes[name], fcs[form].versions[name]
			}
			next[k] = h
		}
	}
	s.heldMu.Lock()
	s.held = next
	start := len(next) > 0 && !s.releasing
	if start {
		s.releasing = true
	}
	s.heldMu.Unlock()
	if start {
		go s.releaseHeld()
	}
	return next
}

// warmPending reports whether some subscriber of route configuration name
// of form still loads a cluster that step starts sending it traffic to.
func (s *Server) warmPending(form, name string, step warmStep) bool {
	plan := warmPlan{form: {name: step}}
	t := s.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.streams {
		if state, involved := t.warmLoaded(st, plan, s.refs); involved && state == statePending {
			return true
		}
	}
	return false
}

// releaseInterval is how often held routes are looked at.
const releaseInterval = 20 * time.Millisecond

// releaseHeld publishes each held route once its subscribers loaded the
// clusters, or once it has been held for the ack timeout, until none is
// held.
func (s *Server) releaseHeld() {
	tick := time.NewTicker(releaseInterval)
	defer tick.Stop()
	for range tick.C {
		s.updateMu.Lock()
		err := s.releaseReady()
		s.heldMu.Lock()
		done := len(s.held) == 0
		if done {
			s.releasing = false
		}
		s.heldMu.Unlock()
		s.updateMu.Unlock()
		if err != nil {
			s.log.Error(err, "publish a held route")
		}
		if done {
			return
		}
	}
}

// releaseReady publishes the held routes that need not wait any longer.
// s.updateMu must be held.
func (s *Server) releaseReady() error {
	s.heldMu.Lock()
	held := maps.Clone(s.held)
	s.heldMu.Unlock()
	now := time.Now()
	var errs []error
	for _, k := range slices.SortedFunc(maps.Keys(held), func(a, b heldKey) int {
		return cmp.Or(cmp.Compare(a.form, b.form), cmp.Compare(a.name, b.name))
	}) {
		h := held[k]
		if s.warmPending(k.form, k.name, h.step) && now.Sub(h.since) < s.ackTimeout {
			continue
		}
		up, versions := map[string]proto.Message{k.name: h.msg}, map[string]string{k.name: h.version}
		var err error
		if k.form == "" {
			err = s.apply(resource.RouteType, up, versions, nil, nil)
		} else {
			err = s.applyTo(resource.RouteType, histKey(resource.RouteType, k.form), s.formCaches[k.form], s.formPublished[k.form], up, versions, nil, nil)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.heldMu.Lock()
		delete(s.held, k)
		s.heldMu.Unlock()
	}
	return errors.Join(errs...)
}

// heldVersion reports whether the default content version of route
// configuration name is held, to be published once its subscribers loaded
// its clusters.
func (s *Server) heldVersion(name, version string) bool {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	h, ok := s.held[heldKey{name: name}]
	return ok && h.version == version
}

// DesiredVersion is the content version of a resource as the last update
// asked for it: Version, or for a route configuration held back until its
// subscribers loaded a cluster, the held content, which is published once
// they did. Waits (WaitSyncedFor) accept it.
func (s *Server) DesiredVersion(typeURL, name string) (string, bool) {
	if typeURL == resource.RouteType {
		s.heldMu.Lock()
		h, ok := s.held[heldKey{name: name}]
		s.heldMu.Unlock()
		if ok {
			return h.version, true
		}
	}
	return s.Version(typeURL, name)
}
