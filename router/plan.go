package router

// Plan is the route plan for all services: what every client flavour should
// do with every request. It is the only input of the xDS translator. [Build]
// returns plans whose slices are sorted, so equal states give equal plans.
type Plan struct {
	// Services are sorted by namespace, then name.
	Services []ServicePlan `json:"services"`
	// Clusters are sorted by name; every cluster a route names is here.
	Clusters []Cluster `json:"clusters"`
}

// ServicePlan holds the routes of one service, per port.
type ServicePlan struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Ports are sorted by number.
	Ports []PortPlan `json:"ports"`
	// Consumers are the other namespaces whose proxies may see the
	// service's resources (see [Consumers.Allows]).
	Consumers Consumers `json:"consumers,omitempty"`
}

// PortPlan is the ordered route list of one service port.
//
// Routes are matched first to last and the first match wins, so the order is
// the policy: cohort routes come first, because a cohort member must reach the
// canary whatever the split says; then the sticky route, because a request
// carrying a user key must be placed by that key and not by a coin toss; the
// weighted default route takes every remaining request. A default route
// placed earlier would swallow cohort members and sticky users. While the
// service has a canary to warm, a warm-up route follows the default route:
// no request reaches it, and it exists only so that clients load every
// cluster the port may route to before any traffic moves there (see
// [RouteWarmup]).
type PortPlan struct {
	Name     string   `json:"name"`
	Number   uint32   `json:"number"`
	Protocol Protocol `json:"protocol"`
	Routes   []Route  `json:"routes"`
}

// RouteKind says which part of a [Strategy] a route implements; it fixes the
// route's place in the list.
type RouteKind string

// Route kinds in the order they appear in a [PortPlan].
const (
	RouteCohort  RouteKind = "cohort"
	RouteSticky  RouteKind = "sticky"
	RouteDefault RouteKind = "default"
	// RouteWarmup is the unreachable last route that names every cluster
	// of its port so that clients load them before traffic moves to them
	// (make before break). It matches [WarmupHeader] = [WarmupValue] and
	// comes after the default route, which already matches every request.
	RouteWarmup RouteKind = "warmup"
)

// rank orders route kinds; unknown kinds sort last and fail validation.
func (k RouteKind) rank() int {
	switch k {
	case RouteCohort:
		return 0
	case RouteSticky:
		return 1
	case RouteDefault:
		return 2
	case RouteWarmup:
		return 3
	default:
		return 4
	}
}

// Route is one route: a match and where matching requests go.
type Route struct {
	// Name is unique within its port: "cohort-<n>", "sticky", "default"
	// or "warmup".
	Name string    `json:"name"`
	Kind RouteKind `json:"kind"`
	// Headers must all match; none means every request matches. Names are
	// lower-case, as proxyless gRPC clients never match upper-case names.
	Headers []HeaderMatch `json:"headers,omitempty"`
	// Clusters receive the matching requests in proportion to their weights,
	// which are > 0 and sum to TotalWeight.
	Clusters []ClusterWeight `json:"clusters"`
	// Hash, when set, makes the data plane pick an endpoint of the cluster by
	// hashing this request attribute (sticky splits).
	Hash *HashPolicy `json:"hash,omitempty"`
	// Mirror, when set, copies a fraction of the matching requests to a
	// cluster and discards the answers.
	Mirror *Mirror `json:"mirror,omitempty"`
}

// HeaderMatch matches one request header.
type HeaderMatch struct {
	Name  string    `json:"name"`
	Match MatchKind `json:"match"`
	// Value is the exact value or a full-match RE2 expression; empty for
	// MatchPresent.
	Value string `json:"value,omitempty"`
}

// ClusterWeight is one target of a route.
type ClusterWeight struct {
	Cluster string `json:"cluster"`
	Weight  Weight `json:"weight"`
}

// HashPolicy is the request attribute a ring-hash cluster hashes.
type HashPolicy struct {
	Source Source `json:"source"`
	Name   string `json:"name"`
}

// Mirror copies a fraction of a route's requests to a cluster.
type Mirror struct {
	Cluster  string `json:"cluster"`
	Fraction Weight `json:"fraction"`
}

// LBPolicy is how a cluster picks an endpoint.
type LBPolicy string

// Load-balancing policies of a [Cluster].
const (
	LBRoundRobin LBPolicy = "round_robin"
	// LBRingHash hashes the route's [HashPolicy] attribute onto a ring of
	// exactly StickyRingSize entries.
	LBRingHash LBPolicy = "ring_hash"
)

// StickyRingSize is the fixed number of ring entries of a sticky cluster
// (minimum and maximum ring size alike). Each entry owns about 1/4096 of the
// key space (0.024%, well under the 1% bucket the split promises). 4096 is
// also grpc-go's default cap (GRPC_RING_HASH_CAP); a larger value would be
// clamped there, and a ring whose size varied with the weights would lose the
// monotonicity described in [Build].
const StickyRingSize = 4096

// Cluster is a set of endpoints of one service port, grouped by track into
// localities.
type Cluster struct {
	Name     string    `json:"name"`
	ID       ClusterID `json:"id"`
	Protocol Protocol  `json:"protocol"`
	LB       LBPolicy  `json:"lb"`
	// Localities are sorted by track then revision, one per revision of a
	// track present; each has a weight > 0. A cluster may have no localities (no ready endpoints): it is
	// still published so that clients fail fast instead of waiting for it.
	Localities []Locality `json:"localities,omitempty"`
	// External, set only on a TrackExternal cluster, is the DNS name and
	// port the client resolves and calls (see [AddExternals]).
	External *ExternalAddress `json:"external,omitempty"`
}

// Locality is the endpoints of one revision of one track within a cluster.
// Its sub-zone on the wire names both (see [LocalitySubZone]), which is how
// load reports are attributed to the revision that served them: requests a
// client reports late for a rolled-back revision never count for the next.
type Locality struct {
	Track Track `json:"track"`
	// Revision is the pod template revision (label sluice.dev/revision) of
	// the endpoints; empty for pods that carry none.
	Revision string `json:"revision,omitempty"`
	Weight   uint32 `json:"weight"`
	// Endpoints are sorted by pod name.
	Endpoints []Address `json:"endpoints"`
}

// Address is a ready endpoint of a cluster.
type Address struct {
	Pod  string `json:"pod"`
	IP   string `json:"ip"`
	Port uint32 `json:"port"`
	// Revision is the pod's revision; it picks the address's locality.
	Revision string `json:"revision,omitempty"`
}

// Cluster returns the cluster with the given name.
func (p Plan) Cluster(name string) (Cluster, bool) {
	for _, c := range p.Clusters {
		if c.Name == name {
			return c, true
		}
	}
	return Cluster{}, false
}
