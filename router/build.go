package router

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
)

// Build turns a State into a Plan. It is pure and deterministic: the plan
// depends only on the contents of the state, never on the order of its
// slices or maps, and it always passes [Plan.Validate]. A state with any
// invalid service yields no plan and an error naming every problem.
//
// For every service port Build emits:
//   - a stable and a canary cluster (round robin), even when they have no
//     ready endpoints: an empty cluster makes clients fail fast with
//     "unavailable" instead of waiting for a cluster that never comes, and
//     keeps cluster names stable across a rollout;
//   - one route per cohort, to the canary;
//   - with a sticky split, one route hashing the user key onto a sticky
//     cluster (below), published whatever the share;
//   - the default route, weighted between stable and canary, optionally
//     mirroring a fraction of its requests to the canary;
//   - while the service has a canary to warm (any canary pod, ready or not,
//     a canary weight or mirror above 0, a cohort or a sticky split), a
//     warm-up route after the default route: no request reaches it, but it
//     names the stable, canary and (with a sticky split) sticky clusters, so
//     proxyless clients load and connect to all of them before any weight
//     moves, and no RPC fails on a cluster the client has not loaded yet
//     (see [RouteWarmup] and warmup.go for why this works in grpc-go).
//
// Sticky splits. Routes can only match raw header values, so the hashing
// happens in the data plane: the sticky cluster holds both tracks' ready
// endpoints in two localities (sub-zone = track) weighted share and
// TotalWeight-share, uses ring hash with a ring of exactly StickyRingSize
// entries (minimum = maximum), and the route hashes the header (or cookie)
// named by Sticky. grpc-go (v1.85, cdsbalancer configbuilder and
// balancer/ringhash) gives each endpoint the weight locality share ×
// endpoint share within its locality, sorts endpoints by address and gives
// endpoint i the ring entries "<address>_0", "<address>_1", ... up to its
// running share of the ring; Envoy's ring hash, which grpc-go's mirrors,
// does the same with locality-weighted balancing on. Raising the share
// therefore adds entries to canary endpoints and removes entries from
// stable ones, and an entry, once placed, keeps its position: a user whose
// key hashed to a canary entry stays on the canary. A ring whose size
// varied with the weights (Envoy's default minimum 1024, maximum 8M) would
// move entries of both tracks and lose this. Users without the key fall
// through to the default route.
//
// The guarantee actually obtained, for an unchanged set of ready endpoints
// (checked on a model of grpc-go's ring in this package's tests, and end to
// end with grpc-go's own xDS client in package xds/translate): raising the
// share moves users from stable to canary only, except that rounding entry
// counts to whole entries (the running sum is rounded up at each endpoint,
// and address order interleaves the tracks) can move at most one entry per
// endpoint against the change, so in expectation at most (ready
// endpoints)/StickyRingSize of users (0.3% with 12 pods) move back; with one
// pod per track nobody does. A change of the endpoint set (pods added,
// removed, becoming ready) rebuilds the ring and moves users in proportion
// to the change, as any consistent hash does. Proxyless gRPC clients cannot
// hash cookies: for a cookie key they pick a random ring position per
// request (the split holds, stickiness does not).
func Build(s State) (Plan, error) {
	services := slices.Clone(s.Services)
	slices.SortFunc(services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var errs []error
	var plan Plan
	for i, svc := range services {
		id := svc.Namespace + "/" + svc.Name
		if i > 0 && svc.Namespace == services[i-1].Namespace && svc.Name == services[i-1].Name {
			errs = append(errs, fmt.Errorf("service %s: listed twice", id))
			continue
		}
		st, err := checkService(svc)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", id, err))
			continue
		}
		svc.Strategy = st
		sp, clusters, err := buildService(svc)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", id, err))
			continue
		}
		plan.Services = append(plan.Services, sp)
		plan.Clusters = append(plan.Clusters, clusters...)
	}
	if len(errs) > 0 {
		return Plan{}, errors.Join(errs...)
	}
	slices.SortFunc(plan.Clusters, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	if err := plan.Validate(); err != nil {
		return Plan{}, fmt.Errorf("built plan is invalid: %w", err)
	}
	return plan, nil
}

// buildService builds the routes and clusters of a checked service.
func buildService(svc Service) (ServicePlan, []Cluster, error) {
	sp := ServicePlan{Namespace: svc.Namespace, Name: svc.Name, Consumers: svc.Consumers.Union(Consumers{})}
	ports := slices.Clone(svc.Ports)
	slices.SortFunc(ports, func(a, b Port) int { return cmp.Compare(a.Number, b.Number) })
	cohorts := slices.Clone(svc.Strategy.Cohorts)
	slices.SortFunc(cohorts, compareCohorts)
	var clusters []Cluster
	var errs []error
	for _, port := range ports {
		byTrack, err := readyAddresses(svc.Endpoints, port.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("port %s: %w", port.Name, err))
			continue
		}
		id := func(t Track) ClusterID {
			return ClusterID{Namespace: svc.Namespace, Service: svc.Name, Port: port.Number, Track: t}
		}
		stable := trackCluster(id(TrackStable), port.Protocol, byTrack[TrackStable])
		canary := trackCluster(id(TrackCanary), port.Protocol, byTrack[TrackCanary])
		clusters = append(clusters, stable, canary)

		pp := PortPlan{Name: port.Name, Number: port.Number, Protocol: port.Protocol}
		// A cohort is routed to the canary only while the canary has a ready
		// endpoint on this port: an empty cluster would fail every cohort
		// request, while stable can serve them. This covers the moment
		// between the canary's creation and its readiness, and a canary that
		// lost all its pods; the warm-up route below already names the
		// canary cluster then, so clients have loaded it when the cohort
		// route appears.
		portCohorts := cohorts
		if len(byTrack[TrackCanary]) == 0 {
			portCohorts = nil
		}
		for i, c := range portCohorts {
			pp.Routes = append(pp.Routes, Route{
				Name:     fmt.Sprintf("cohort-%d", i),
				Kind:     RouteCohort,
				Headers:  []HeaderMatch{cohortMatch(c)},
				Clusters: []ClusterWeight{{Cluster: canary.Name, Weight: TotalWeight}},
			})
		}
		warm := []string{stable.Name, canary.Name}
		if st := svc.Strategy.Sticky; st != nil {
			route, sticky := stickyRoute(*st, id(TrackSticky), port.Protocol, byTrack)
			pp.Routes = append(pp.Routes, route)
			clusters = append(clusters, sticky)
			warm = append(warm, sticky.Name)
		}
		pp.Routes = append(pp.Routes, defaultRoute(svc.Strategy, stable.Name, canary.Name))
		if needsWarmup(svc) {
			pp.Routes = append(pp.Routes, warmupRoute(svc.Namespace, svc.Name, port.Number, warm))
		}
		sp.Ports = append(sp.Ports, pp)
	}
	return sp, clusters, errors.Join(errs...)
}

// readyAddresses groups the ready endpoints serving a port by track, each
// group sorted by pod name. Two ready endpoints with one address are an
// error: proxyless gRPC rejects an assignment that lists an address twice.
func readyAddresses(endpoints []Endpoint, portName string) (map[Track][]Address, error) {
	byTrack := map[Track][]Address{}
	owner := map[string]string{}
	var errs []error
	for _, e := range endpoints {
		n, ok := e.Ports[portName]
		if !e.Ready || !ok {
			continue
		}
		a := Address{Pod: e.Pod, IP: e.IP, Port: n, Revision: e.Revision}
		key := fmt.Sprintf("%s:%d", a.IP, a.Port)
		if other, dup := owner[key]; dup {
			errs = append(errs, fmt.Errorf("ready pods %q and %q both claim address %s", min(other, e.Pod), max(other, e.Pod), key))
			continue
		}
		owner[key] = e.Pod
		byTrack[e.Track] = append(byTrack[e.Track], a)
	}
	for _, as := range byTrack {
		slices.SortFunc(as, func(a, b Address) int { return cmp.Compare(a.Pod, b.Pod) })
	}
	slices.SortFunc(errs, func(a, b error) int { return cmp.Compare(a.Error(), b.Error()) })
	return byTrack, errors.Join(errs...)
}

func trackCluster(id ClusterID, proto Protocol, addrs []Address) Cluster {
	c := Cluster{Name: id.Name(), ID: id, Protocol: proto, LB: LBRoundRobin}
	groups := byRevision(addrs)
	for _, as := range groups {
		// One revision: weight 1, as before revisions had localities. Several
		// (a rolling update in progress): each locality weighs its endpoint
		// count, so every endpoint keeps an equal share of the cluster.
		w := uint32(1)
		if len(groups) > 1 {
			w = uint32(len(as))
		}
		c.Localities = append(c.Localities, Locality{Track: id.Track, Revision: as[0].Revision, Weight: w, Endpoints: as})
	}
	return c
}

// byRevision splits addresses (sorted by pod) into groups of one revision
// each, sorted by revision, each keeping the pod order.
func byRevision(addrs []Address) [][]Address {
	idx := map[string]int{}
	var groups [][]Address
	for _, a := range addrs {
		i, ok := idx[a.Revision]
		if !ok {
			i = len(groups)
			idx[a.Revision] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], a)
	}
	slices.SortFunc(groups, func(a, b []Address) int { return cmp.Compare(a[0].Revision, b[0].Revision) })
	return groups
}

// trackLocalities returns one locality per revision of a track's addresses,
// each with weight w: the ring hash weighs every endpoint by its locality's
// weight, so a track's share stays w per endpoint whatever its revisions.
func trackLocalities(track Track, w uint32, addrs []Address) []Locality {
	var out []Locality
	for _, as := range byRevision(addrs) {
		out = append(out, Locality{Track: track, Revision: as[0].Revision, Weight: w, Endpoints: as})
	}
	return out
}

// stickyRoute returns the sticky route and the ring-hash cluster it
// targets. The cluster exists for as long as the strategy has a sticky
// split, even at 0% or 100%, so that moving the share never introduces a new
// cluster (a client briefly fails RPCs routed to a cluster it has not loaded
// yet). A track gets a locality only if its weight and its ready endpoints
// are not zero: proxyless gRPC ignores zero-weight localities and a ring
// cannot hold a locality without endpoints. So while both tracks have a
// share, the users of a track with no ready endpoints are served by the
// other track; a ring left with no locality fails requests fast, like any
// empty cluster.
func stickyRoute(st Sticky, id ClusterID, proto Protocol, byTrack map[Track][]Address) (Route, Cluster) {
	r := Route{Name: "sticky", Kind: RouteSticky, Hash: &HashPolicy{Source: st.Source, Name: st.Name}}
	if st.Source == SourceHeader {
		r.Headers = []HeaderMatch{{Name: st.Name, Match: MatchPresent}}
	} else {
		r.Headers = []HeaderMatch{cookieMatch(st.Name, MatchPresent, "")}
	}
	c := Cluster{Name: id.Name(), ID: id, Protocol: proto, LB: LBRingHash}
	// Sorted by track: canary before stable.
	if as := byTrack[TrackCanary]; len(as) > 0 && st.Share > 0 {
		c.Localities = append(c.Localities, trackLocalities(TrackCanary, uint32(st.Share), as)...)
	}
	if as := byTrack[TrackStable]; len(as) > 0 && st.Share < TotalWeight {
		c.Localities = append(c.Localities, trackLocalities(TrackStable, uint32(st.Share.Complement()), as)...)
	}
	r.Clusters = []ClusterWeight{{Cluster: c.Name, Weight: TotalWeight}}
	return r, c
}

func defaultRoute(st Strategy, stable, canary string) Route {
	r := Route{Name: "default", Kind: RouteDefault}
	if w := st.CanaryWeight.Complement(); w > 0 {
		r.Clusters = append(r.Clusters, ClusterWeight{Cluster: stable, Weight: w})
	}
	if st.CanaryWeight > 0 {
		r.Clusters = append(r.Clusters, ClusterWeight{Cluster: canary, Weight: st.CanaryWeight})
	}
	if st.Mirror > 0 {
		r.Mirror = &Mirror{Cluster: canary, Fraction: st.Mirror}
	}
	return r
}

// cohortMatch turns a cohort into a header match. Cookies are matched on the
// Cookie header with a full-match expression that finds the named cookie
// among the others.
func cohortMatch(c Cohort) HeaderMatch {
	if c.Source == SourceCookie {
		return cookieMatch(c.Name, c.Match, c.Value)
	}
	return HeaderMatch{Name: c.Name, Match: c.Match, Value: c.Value}
}

// cookieMatch matches cookie name against a value on the "cookie" header.
// A regex value must match the whole cookie value; it should not match ';'.
func cookieMatch(name string, kind MatchKind, value string) HeaderMatch {
	var v string
	switch kind {
	case MatchExact:
		v = regexp.QuoteMeta(value)
	case MatchRegex:
		v = "(?:" + value + ")"
	default:
		v = "[^;]*"
	}
	return HeaderMatch{
		Name:  "cookie",
		Match: MatchRegex,
		Value: `(?:.*;\s*)?` + regexp.QuoteMeta(name) + "=" + v + `(?:\s*;.*)?`,
	}
}

func compareCohorts(a, b Cohort) int {
	return cmp.Or(
		cmp.Compare(a.Source, b.Source),
		cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Match, b.Match),
		cmp.Compare(a.Value, b.Value),
	)
}
