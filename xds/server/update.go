package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Update publishes r as the complete desired state. It first validates every
// resource (see the package doc); if anything is wrong nothing is published
// and the error lists every problem.
//
// It then applies make-before-break:
//  1. new and changed clusters and endpoints are published; if some are new,
//     it waits until the proxies subscribed to them acknowledged or rejected
//     them, so a route never arrives before its cluster;
//  2. listeners and routes are published and removed, except a route
//     change that starts sending a proxy traffic to a cluster the published
//     routes only name (a warm-up route) while that proxy still loads the
//     cluster and its endpoints: that route configuration alone is held
//     back and published once the proxy loaded them, after Update returned
//     (see warmload.go);
//  3. clusters and endpoints absent from r are removed only once every proxy
//     subscribed to a listener or route carries its current content (or
//     closed its stream). If a proxy rejected one of them instead, the stale
//     clusters are kept (the proxy still routes by its previous config) and
//     the next Update tries again.
//
// Each wait is bounded by Options.AckTimeout; when it expires the update goes
// on and logs which proxies were late. If ctx ends during a wait, Update
// returns an error saying what was published: after step 1 routes are not
// published; after step 2 the stale clusters stay until the next Update.
// Calls are serialized.
func (s *Server) Update(ctx context.Context, r Resources) error {
	return s.UpdateVariants(ctx, r, nil)
}

// UpdateVariants is [Server.Update] with, for each form of Options.Forms,
// the route configurations that form's streams get instead of the default
// ones (a form without a variant gets the default routes). Variants are
// validated with the rest, and each form's routes are published in step 2
// next to the default ones; ACKs of a form's content count as ACKs of the
// default content for every wait.
func (s *Server) UpdateVariants(ctx context.Context, r Resources, variants map[string]Variant) error {
	return s.Publish(ctx, r, variants, nil)
}

// Publish is [Server.UpdateVariants] with who may see each resource:
// grants must name every resource of r, and nothing else. Streams with an
// identity see only what their namespace is granted; a grant that changes
// without the resource changing is pushed too (the namespaces that gain a
// resource are sent it, those that lose a listener or cluster are sent the
// set without it). Nil grants grant nothing: only streams without an
// identity see anything.
func (s *Server) Publish(ctx context.Context, r Resources, variants map[string]Variant, grants Grants) error {
	if s.metricsErr != nil {
		return fmt.Errorf("xDS server metrics could not be registered, refusing to serve blind: %w", s.metricsErr)
	}
	if s.configErr != nil {
		return fmt.Errorf("xDS server forms: %w", s.configErr)
	}
	c, err := check(r)
	if err != nil {
		return err
	}
	fcs, err := s.checkVariants(c, variants)
	if err != nil {
		return err
	}
	if grants == nil {
		grants = Grants{}
	} else if err := checkGrants(r, grants); err != nil {
		return err
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	// The new grants hold from now on; each type's first change below
	// touches the sentinels of the namespaces whose view changed, so their
	// watches are answered by the new grants.
	touch := touched(s.grants.Load().grants, grants)
	if changed := slices.ContainsFunc(Types, func(t string) bool { return len(touch[t]) > 0 }); changed {
		// Unchanged grants keep their index, and the visible sets it built.
		s.grants.Store(newGrantIndex(grants))
	}

	var fresh []target
	for _, t := range []string{resource.ClusterType, resource.EndpointType} {
		up, _ := s.diff(t, c)
		for name := range up {
			if _, ok := s.publishedVersion(t, name); !ok {
				fresh = append(fresh, target{typeURL: t, name: name, version: c.versions[t][name]})
			}
		}
		if err := s.apply(t, up, c.versions[t], nil, touch[t]); err != nil {
			return err
		}
	}
	if _, err := s.settle(ctx, "new clusters and endpoints before the routes that use them", fresh); err != nil {
		return fmt.Errorf("update interrupted, clusters and endpoints published but not routes: %w", err)
	}
	held := s.holdWarm(s.warmPlanOf(c, fcs), c, fcs)

	for _, t := range []string{resource.ListenerType, resource.RouteType} {
		up, del := s.diff(t, c)
		if t == resource.RouteType {
			for k := range held {
				if k.form == "" {
					delete(up, k.name)
				}
			}
		}
		if err := s.apply(t, up, c.versions[t], del, touch[t]); err != nil {
			return err
		}
	}
	for _, f := range sortedKeys(fcs) {
		if err := s.applyForm(f, withoutHeld(f, fcs[f], held, s.formPublishedVersions(f)), touch[resource.RouteType]); err != nil {
			return err
		}
	}
	defaultLimits := map[string][]string{}
	for name, ls := range variants[""].Limits {
		defaultLimits[name] = append([]string(nil), ls...)
	}
	s.pubMu.Lock()
	s.defaultLimits = defaultLimits
	s.pubMu.Unlock()
	s.publishedOnce.Do(func() { close(s.firstPublished) })

	stale := map[string][]string{}
	n := 0
	for _, t := range []string{resource.ClusterType, resource.EndpointType} {
		_, del := s.diff(t, c)
		stale[t] = del
		n += len(del)
	}
	if n == 0 {
		return nil
	}
	// A held route configuration is not waited for (its published content
	// does not change), and the clusters any of its published contents
	// name stay until a later update.
	heldNames := map[string]bool{}
	for k := range held {
		heldNames[k.name] = true
		for _, named := range s.publishedNames(k) {
			for _, t := range []string{resource.ClusterType, resource.EndpointType} {
				stale[t] = slices.DeleteFunc(stale[t], func(n string) bool { return n == named })
			}
		}
	}
	if n = len(stale[resource.ClusterType]) + len(stale[resource.EndpointType]); n == 0 {
		return nil
	}
	var routing []target
	for _, t := range []string{resource.ListenerType, resource.RouteType} {
		for name, v := range c.versions[t] {
			if t == resource.RouteType && heldNames[name] {
				continue
			}
			routing = append(routing, s.targetOf(t, name, v))
		}
	}
	p, err := s.settleBy(ctx, fmt.Sprintf("routes before removing %d clusters and endpoints", n), s.holdingAny(routing, stale))
	if err != nil {
		return fmt.Errorf("update interrupted, routes published but %d stale clusters and endpoints kept until the next update: %w", n, err)
	}
	if len(p.nacked) > 0 {
		// Those proxies stay on routes that may still use the stale
		// clusters; removing them would break the proxies a NACK is meant
		// to keep serving. The next update tries again.
		s.log.Info("keeping stale clusters and endpoints: proxies rejected the routes that stop using them",
			"stale", n, "nacked", strings.Join(p.nacked, ", "))
		return nil
	}
	for _, t := range []string{resource.ClusterType, resource.EndpointType} {
		if err := s.apply(t, nil, nil, stale[t], nil); err != nil {
			return err
		}
	}
	return nil
}

// withoutHeld is fc with the held route configurations of form f at their
// published content (pub), so that publishing it changes none of them.
func withoutHeld(f string, fc formChecked, held map[heldKey]heldRoute, pub map[string]string) formChecked {
	out := fc
	out.versions = maps.Clone(fc.versions)
	for k := range held {
		if v, ok := pub[k.name]; ok && k.form == f {
			out.versions[k.name] = v
		}
	}
	return out
}

// formPublishedVersions copies form f's published route versions.
func (s *Server) formPublishedVersions(f string) map[string]string {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	return maps.Clone(s.formPublished[f])
}

// publishedNames lists the clusters named by the published contents of
// k's route configuration, in its form and the default one.
func (s *Server) publishedNames(k heldKey) []string {
	s.pubMu.RLock()
	versions := []string{s.published[resource.RouteType][k.name]}
	if k.form != "" {
		versions = append(versions, s.formPublished[k.form][k.name])
	}
	s.pubMu.RUnlock()
	var out []string
	for _, v := range versions {
		named, _ := s.refs.getNamed(v)
		out = append(out, named...)
	}
	return out
}

// diff returns the resources of type t in c that are new or changed, and the
// names published now but absent from c.
func (s *Server) diff(t string, c checked) (map[string]proto.Message, []string) {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	up := map[string]proto.Message{}
	for name, v := range c.versions[t] {
		if s.published[t][name] != v {
			up[name] = c.resources[t][name]
		}
	}
	var del []string
	for _, name := range sortedKeys(s.published[t]) {
		if _, ok := c.versions[t][name]; !ok {
			del = append(del, name)
		}
	}
	return up, del
}

func (s *Server) publishedVersion(t, name string) (string, bool) {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	v, ok := s.published[t][name]
	return v, ok
}

// apply publishes one change of type t to its cache: one new cache version,
// recorded in the history before the cache can answer with it. versions holds
// the content version of every upserted resource; touch names the sentinels
// whose watches must look again (see scope.go).
func (s *Server) apply(t string, up map[string]proto.Message, versions map[string]string, del, touch []string) error {
	return s.applyTo(t, t, s.caches[t], s.published[t], up, versions, del, touch)
}

// applyForm publishes the changes of one form's route set to its cache.
func (s *Server) applyForm(f string, fc formChecked, touch []string) error {
	s.pubMu.RLock()
	up := map[string]proto.Message{}
	for name, v := range fc.versions {
		if s.formPublished[f][name] != v {
			up[name] = fc.routes[name]
		}
	}
	var del []string
	for _, name := range sortedKeys(s.formPublished[f]) {
		if _, ok := fc.versions[name]; !ok {
			del = append(del, name)
		}
	}
	s.pubMu.RUnlock()
	s.pubMu.Lock()
	s.formLimits[f] = fc.limits
	s.pubMu.Unlock()
	return s.applyTo(resource.RouteType, histKey(resource.RouteType, f), s.formCaches[f], s.formPublished[f], up, fc.versions, del, touch)
}

// applyTo publishes one change of type t to cache lc, whose versions are
// counted and remembered under key hk and whose published contents are pub.
func (s *Server) applyTo(t, hk string, lc *cache.LinearCache, pub map[string]string, up map[string]proto.Message, versions map[string]string, del, touch []string) error {
	if len(up) == 0 && len(del) == 0 && len(touch) == 0 {
		return nil
	}
	contents := make(map[string]string, len(up)+len(del))
	toUpdate := make(map[string]types.Resource, len(up))
	for name, m := range up {
		contents[name] = versions[name]
		toUpdate[name] = m
		if t == resource.RouteType {
			s.refs.add(versions[name], m)
		}
	}
	for _, name := range del {
		contents[name] = ""
	}
	s.versions[hk]++
	s.hist.record(hk, s.versions[hk], contents)
	s.pubMu.Lock()
	for name, v := range contents {
		if v == "" {
			delete(pub, name)
		} else {
			pub[name] = v
		}
	}
	s.pubMu.Unlock()
	defer s.tracker.poke()
	// A sentinel never exists: deleting it only wakes the watches on it.
	if err := lc.UpdateResources(toUpdate, append(slices.Clone(del), touch...)); err != nil {
		return fmt.Errorf("publish %d %s resources (%s): %w", len(contents), typeLabel(t), hk, err)
	}
	s.log.V(1).Info("published xDS resources", "type", typeLabel(t), "cache", hk, "version", s.versions[hk], "upserted", len(up), "removed", len(del))
	return nil
}

// settle waits, bounded by the ack timeout, until every subscriber of
// targets has acknowledged or rejected them, and returns who did which. A
// timeout is logged and not an error; the end of ctx is.
func (s *Server) settle(ctx context.Context, why string, targets []target) (progress, error) {
	if len(targets) == 0 {
		return progress{}, nil
	}
	return s.settleBy(ctx, why, func(st *streamState) (syncState, bool) { return s.tracker.classify(st, targets) })
}

// holdingAny classifies streams on targets, where a stream takes part in a
// route target only while a content of that route it carries or was sent
// names one of the stale clusters: removing clusters that none of its
// routes name cannot break a proxy, so a proxy that has not acknowledged a
// route change that concerns it not (an idle gRPC C-core client reads its
// xDS stream only while it makes calls) is not waited for. Listener targets
// are kept whole. Called with the tracker's lock held.
func (s *Server) holdingAny(targets []target, stale map[string][]string) func(*streamState) (syncState, bool) {
	gone := map[string]bool{}
	for _, names := range stale {
		for _, n := range names {
			gone[n] = true
		}
	}
	return func(st *streamState) (syncState, bool) {
		var mine []target
		for _, tg := range targets {
			if tg.typeURL != resource.RouteType || s.namesAny(st, tg.name, gone) {
				mine = append(mine, tg)
			}
		}
		return s.tracker.classify(st, mine)
	}
}

// namesAny reports whether a content of route configuration name that st
// carries or was sent names a cluster of gone (or is not known, or may
// name any cluster). The tracker's lock must be held.
func (s *Server) namesAny(st *streamState, name string, gone map[string]bool) bool {
	ts := st.types[resource.RouteType]
	if ts == nil || !ts.subscribed(name) {
		return false
	}
	var contents []string
	if c, ok := ts.acked[name]; ok {
		contents = append(contents, c)
	}
	for _, sent := range ts.inflight {
		if c, ok := sent.contents[name]; ok {
			contents = append(contents, c)
		}
	}
	for _, c := range contents {
		named, known := s.refs.getNamed(c)
		if !known {
			return true
		}
		for _, n := range named {
			if n == "*" || gone[n] {
				return true
			}
		}
	}
	return false
}

// settleBy is settle with the state of each stream given by classify.
func (s *Server) settleBy(ctx context.Context, why string, classify func(*streamState) (syncState, bool)) (progress, error) {
	wctx, cancel := context.WithTimeout(ctx, s.ackTimeout)
	defer cancel()
	p, err := s.tracker.waitBy(wctx, classify, true, nil, 0)
	switch {
	case err == nil:
		if len(p.nacked) > 0 {
			s.log.Info("proxies rejected part of the update; they keep their previous config", "waitingFor", why, "nacked", strings.Join(p.nacked, ", "))
		}
		return p, nil
	case ctx.Err() != nil:
		return p, err
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Info("proxies did not acknowledge in time; going on anyway", "waitingFor", why, "timeout", s.ackTimeout.String(),
			"pending", strings.Join(p.pending, ", "), "nacked", strings.Join(p.nacked, ", "))
		return p, nil
	default:
		return p, err
	}
}
