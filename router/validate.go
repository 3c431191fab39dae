package router

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Errors reported by [Plan.Validate]; test for them with errors.Is.
var (
	// ErrWeightSum: a route's cluster weights do not add up to TotalWeight
	// (including a route with no clusters, whose sum is 0).
	ErrWeightSum = errors.New("route weights do not sum to TotalWeight")
	// ErrZeroWeight: a route lists a cluster with weight 0.
	ErrZeroWeight = errors.New("route lists a cluster with weight 0")
	// ErrUnknownCluster: a route or mirror names a cluster not in the plan.
	ErrUnknownCluster = errors.New("route references a cluster not in the plan")
	// ErrDuplicateName: two services, ports, routes, clusters or route
	// targets share a name.
	ErrDuplicateName = errors.New("duplicate name")
	// ErrHeaderName: a header name is not a lower-case token a route can match.
	ErrHeaderName = errors.New("invalid header name")
	// ErrHeaderMatch: a header match has an unknown kind or a bad value.
	ErrHeaderMatch = errors.New("invalid header match")
	// ErrRouteOrder: routes are not cohort, then sticky, then exactly one
	// default route, then at most one warm-up route last.
	ErrRouteOrder = errors.New("routes out of order")
	// ErrWarmup: a warm-up route could be reached by a request (it does not
	// match exactly WarmupHeader = WarmupValue of its port, or the default
	// route before it has header matches), hashes or mirrors, or does not
	// name every cluster the other routes of its port name.
	ErrWarmup = errors.New("invalid warm-up route")
	// ErrMirror: a mirror fraction is 0 or above TotalWeight.
	ErrMirror = errors.New("invalid mirror fraction")
	// ErrClusterName: a cluster's name is not ClusterName of its ID.
	ErrClusterName = errors.New("cluster name does not match its identity")
	// ErrLocality: a locality has weight 0, a repeated or unknown track and
	// revision, a revision that is not a label value, or
	// the weights of a cluster overflow 32 bits.
	ErrLocality = errors.New("invalid locality")
	// ErrEndpoint: an endpoint address is invalid or listed twice in a cluster.
	ErrEndpoint = errors.New("invalid endpoint")
	// ErrProtocol: a port or cluster has an unknown protocol or LB policy.
	ErrProtocol = errors.New("invalid protocol or load-balancing policy")
)

// Validate checks every rule a plan must obey before it is translated and
// published, and returns all violations joined with errors.Join, each
// wrapping one of the Err* values above. A nil result means every weighted
// route sums to exactly TotalWeight, every route and mirror references an
// existing cluster, names are unique, header names are lower-case, the
// route order is cohort, sticky, default, warm-up, and a warm-up route is
// unreachable and names every cluster its port routes to.
func (p Plan) Validate() error {
	var errs []error
	clusters := map[string]bool{}
	for _, c := range p.Clusters {
		if clusters[c.Name] {
			errs = append(errs, fmt.Errorf("%w: cluster %q listed twice", ErrDuplicateName, c.Name))
		}
		clusters[c.Name] = true
		errs = append(errs, validateCluster(c)...)
	}
	services := map[string]bool{}
	for _, s := range p.Services {
		id := s.Namespace + "/" + s.Name
		if services[id] {
			errs = append(errs, fmt.Errorf("%w: service %s listed twice", ErrDuplicateName, id))
		}
		services[id] = true
		ports := map[uint32]bool{}
		for _, port := range s.Ports {
			where := fmt.Sprintf("service %s port %d", id, port.Number)
			if ports[port.Number] {
				errs = append(errs, fmt.Errorf("%w: %s listed twice", ErrDuplicateName, where))
			}
			ports[port.Number] = true
			if port.Protocol != ProtocolGRPC && port.Protocol != ProtocolHTTP {
				errs = append(errs, fmt.Errorf("%w: %s: protocol %q", ErrProtocol, where, port.Protocol))
			}
			errs = append(errs, validateRoutes(where, port.Routes, clusters)...)
			errs = append(errs, validateWarmup(where, port, s.Namespace, s.Name)...)
		}
	}
	return errors.Join(errs...)
}

func validateRoutes(where string, routes []Route, clusters map[string]bool) []error {
	var errs []error
	// end is the index after the last route that is not a warm-up route.
	end := len(routes)
	for end > 0 && routes[end-1].Kind == RouteWarmup {
		end--
	}
	if end == 0 || routes[end-1].Kind != RouteDefault {
		errs = append(errs, fmt.Errorf("%w: %s: the last route before any warm-up route must be the default route", ErrRouteOrder, where))
	}
	if n := len(routes) - end; n > 1 {
		errs = append(errs, fmt.Errorf("%w: %s: %d warm-up routes, want at most one", ErrRouteOrder, where, n))
	}
	names := map[string]bool{}
	for i, r := range routes {
		at := fmt.Sprintf("%s route %q", where, r.Name)
		if names[r.Name] {
			errs = append(errs, fmt.Errorf("%w: %s listed twice", ErrDuplicateName, at))
		}
		names[r.Name] = true
		switch {
		case r.Kind.rank() > RouteWarmup.rank():
			errs = append(errs, fmt.Errorf("%w: %s: unknown kind %q", ErrRouteOrder, at, r.Kind))
		case i > 0 && r.Kind.rank() < routes[i-1].Kind.rank():
			errs = append(errs, fmt.Errorf("%w: %s: a %s route after a %s route", ErrRouteOrder, at, r.Kind, routes[i-1].Kind))
		case r.Kind == RouteDefault && i != end-1:
			errs = append(errs, fmt.Errorf("%w: %s: a default route before the last non-warm-up position", ErrRouteOrder, at))
		}
		var sum uint64
		targets := map[string]bool{}
		for _, cw := range r.Clusters {
			sum += uint64(cw.Weight)
			if cw.Weight == 0 {
				errs = append(errs, fmt.Errorf("%w: %s: cluster %q", ErrZeroWeight, at, cw.Cluster))
			}
			if !clusters[cw.Cluster] {
				errs = append(errs, fmt.Errorf("%w: %s: cluster %q", ErrUnknownCluster, at, cw.Cluster))
			}
			if targets[cw.Cluster] {
				errs = append(errs, fmt.Errorf("%w: %s: cluster %q targeted twice", ErrDuplicateName, at, cw.Cluster))
			}
			targets[cw.Cluster] = true
		}
		if sum != uint64(TotalWeight) {
			errs = append(errs, fmt.Errorf("%w: %s: sum is %d, want %d", ErrWeightSum, at, sum, TotalWeight))
		}
		for _, h := range r.Headers {
			errs = append(errs, validateHeaderMatch(at, h)...)
		}
		if r.Hash != nil {
			if r.Hash.Source == SourceHeader {
				if err := checkHeaderName(r.Hash.Name); err != nil {
					errs = append(errs, fmt.Errorf("%w: %s: hash policy: %v", ErrHeaderName, at, err))
				}
			} else if _, err := checkKey(r.Hash.Source, r.Hash.Name); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: hash policy: %v", ErrHeaderMatch, at, err))
			}
		}
		if m := r.Mirror; m != nil {
			if !clusters[m.Cluster] {
				errs = append(errs, fmt.Errorf("%w: %s: mirror cluster %q", ErrUnknownCluster, at, m.Cluster))
			}
			if m.Fraction == 0 || !m.Fraction.Valid() {
				errs = append(errs, fmt.Errorf("%w: %s: fraction %d is not in 1..%d", ErrMirror, at, m.Fraction, TotalWeight))
			}
		}
	}
	return errs
}

// validateWarmup checks the warm-up routes of a port (their position is
// checked by validateRoutes): each must be unreachable twice over, after a
// default route that matches every request and behind its own header match,
// and must name every cluster the port's other routes name or mirror to, so
// that a client subscribed to it has loaded every cluster traffic may move to.
func validateWarmup(where string, port PortPlan, namespace, name string) []error {
	var errs []error
	want := HeaderMatch{Name: WarmupHeader, Match: MatchExact, Value: WarmupValue(namespace, name, port.Number)}
	named := map[string]bool{}
	for _, r := range port.Routes {
		if r.Kind == RouteWarmup {
			continue
		}
		for _, cw := range r.Clusters {
			named[cw.Cluster] = true
		}
		if r.Mirror != nil {
			named[r.Mirror.Cluster] = true
		}
	}
	for i, r := range port.Routes {
		if r.Kind != RouteWarmup {
			continue
		}
		at := fmt.Sprintf("%s route %q", where, r.Name)
		if len(r.Headers) != 1 || r.Headers[0] != want {
			errs = append(errs, fmt.Errorf("%w: %s: must match exactly header %s = %q, nothing else", ErrWarmup, at, want.Name, want.Value))
		}
		if i > 0 && port.Routes[i-1].Kind == RouteDefault && len(port.Routes[i-1].Headers) > 0 {
			errs = append(errs, fmt.Errorf("%w: %s: the default route before it has header matches, so requests could reach it", ErrWarmup, at))
		}
		if r.Hash != nil || r.Mirror != nil {
			errs = append(errs, fmt.Errorf("%w: %s: has a hash or mirror policy", ErrWarmup, at))
		}
		targets := map[string]bool{}
		for _, cw := range r.Clusters {
			targets[cw.Cluster] = true
		}
		for c := range named {
			if !targets[c] {
				errs = append(errs, fmt.Errorf("%w: %s: does not name cluster %q, which another route of the port names", ErrWarmup, at, c))
			}
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}

func validateHeaderMatch(at string, h HeaderMatch) []error {
	var errs []error
	if err := checkHeaderName(h.Name); err != nil {
		errs = append(errs, fmt.Errorf("%w: %s: %v", ErrHeaderName, at, err))
	}
	switch h.Match {
	case MatchExact:
		if h.Value == "" {
			errs = append(errs, fmt.Errorf("%w: %s: header %q: empty exact value", ErrHeaderMatch, at, h.Name))
		}
	case MatchRegex:
		if _, err := regexp.Compile(h.Value); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: header %q: %v", ErrHeaderMatch, at, h.Name, err))
		}
	case MatchPresent:
		if h.Value != "" {
			errs = append(errs, fmt.Errorf("%w: %s: header %q: value given for a presence match", ErrHeaderMatch, at, h.Name))
		}
	default:
		errs = append(errs, fmt.Errorf("%w: %s: header %q: unknown match %q", ErrHeaderMatch, at, h.Name, h.Match))
	}
	return errs
}

func validateCluster(c Cluster) []error {
	var errs []error
	at := fmt.Sprintf("cluster %q", c.Name)
	if want := c.ID.Name(); c.Name != want {
		errs = append(errs, fmt.Errorf("%w: %s: want %q", ErrClusterName, at, want))
	} else if _, err := ParseClusterName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("%w: %v", ErrClusterName, err))
	}
	if c.Protocol != ProtocolGRPC && c.Protocol != ProtocolHTTP {
		errs = append(errs, fmt.Errorf("%w: %s: protocol %q", ErrProtocol, at, c.Protocol))
	}
	if c.LB != LBRoundRobin && c.LB != LBRingHash {
		errs = append(errs, fmt.Errorf("%w: %s: load balancing %q", ErrProtocol, at, c.LB))
	}
	errs = append(errs, validateExternal(c)...)
	type trackRevision struct {
		track    Track
		revision string
	}
	seen := map[trackRevision]bool{}
	addrs := map[netip.AddrPort]bool{}
	var sum uint64
	for _, l := range c.Localities {
		tr := trackRevision{l.Track, l.Revision}
		if _, _, err := ParseLocalitySubZone(LocalitySubZone(l.Track, l.Revision)); err != nil || seen[tr] {
			errs = append(errs, fmt.Errorf("%w: %s: track %q revision %q unknown or repeated", ErrLocality, at, l.Track, l.Revision))
		}
		seen[tr] = true
		if l.Weight == 0 {
			errs = append(errs, fmt.Errorf("%w: %s: locality %s has weight 0 (proxyless gRPC ignores it)", ErrLocality, at, l.Track))
		}
		sum += uint64(l.Weight)
		for _, e := range l.Endpoints {
			ip, err := netip.ParseAddr(e.IP)
			if err != nil || e.Port == 0 || e.Port > 65535 {
				errs = append(errs, fmt.Errorf("%w: %s: pod %q address %s:%d", ErrEndpoint, at, e.Pod, e.IP, e.Port))
				continue
			}
			ap := netip.AddrPortFrom(ip, uint16(e.Port))
			if addrs[ap] {
				errs = append(errs, fmt.Errorf("%w: %s: address %s listed twice", ErrEndpoint, at, ap))
			}
			addrs[ap] = true
		}
	}
	if sum > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("%w: %s: locality weights sum to %d, above 2^32-1", ErrLocality, at, sum))
	}
	return errs
}
