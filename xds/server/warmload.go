package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
// So before publishing a route configuration that sends traffic to a
// cluster some subscriber does not send traffic to yet, while the content
// published now names that cluster, the server waits (bounded by the ack
// timeout) until each such subscriber carries the published content and
// has acknowledged (or rejected) the cluster and its endpoints. A
// subscriber that has not answered the published content and leaves a
// response unanswered beyond warmAnswerGrace is idle and not waited for.

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

// awaitWarmLoads waits, bounded by the ack timeout, until the plan's
// subscribers have loaded the clusters its route changes start sending
// them traffic to. A timeout is logged and not an error; the end of ctx is.
func (s *Server) awaitWarmLoads(ctx context.Context, plan warmPlan) error {
	if len(plan) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.ackTimeout)
	defer cancel()
	p, err := s.tracker.waitBy(wctx, func(st *streamState) (syncState, bool) { return s.tracker.warmLoaded(st, plan, s.refs) }, true, nil, warmAnswerGrace/5)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("waiting for proxies to load the clusters routes are about to send traffic to: %w", err)
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Info("proxies did not load the clusters routes are about to send traffic to in time; going on anyway",
			"timeout", s.ackTimeout.String(), "pending", strings.Join(p.pending, ", "))
		return nil
	default:
		return err
	}
}
