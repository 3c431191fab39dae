package router

import (
	"cmp"
	"slices"
	"strconv"
)

// WarmupHeader is the header matched by warm-up routes. It is reserved:
// cohorts and sticky keys cannot use it.
const WarmupHeader = "x-sluice-warmup"

// WarmupValue is the exact value of [WarmupHeader] that the warm-up route
// of a service port matches: "<namespace>/<service>/<port>".
func WarmupValue(namespace, service string, port uint32) string {
	return namespace + "/" + service + "/" + strconv.FormatUint(uint64(port), 10)
}

// Warm-up routes: make before break.
//
// A proxyless gRPC client loads a cluster (CDS, then EDS, then a child
// balancer connecting to its endpoints) only once a route names it, so the
// first RPCs sent to a newly named cluster fail with Unavailable ("unknown
// cluster selected for RPC") until that load completes. A weight of 0 does not
// help: grpc-go drops zero-weight entries of weighted_clusters while parsing
// the route configuration (xdsresource/unmarshal_rds.go), so the cluster is
// not named at all.
//
// So while a port has a canary to warm, its route list ends with a warm-up
// route that names every cluster the port's routes may send traffic to
// (stable, canary and, with a sticky split, the sticky cluster) and that no
// request ever takes: it comes after the default route, which matches every
// request, and it also requires WarmupHeader to equal [WarmupValue]. Moving
// weights, adding cohorts or ending a sticky split then only sends traffic to
// clusters the client has already loaded and connected to.
//
// Why an unreachable route still loads its clusters: in grpc-go v1.85,
// internal/xds/xdsdepmgr/xds_dependency_manager.go
// (applyRouteConfigUpdateLocked) picks the virtual host matching the target
// and subscribes to the clusters of every route of that virtual host
// (`for _, rt := range matchVH.Routes { for _, cluster := range
// rt.WeightedClusters ...`), without looking at the matchers; and
// internal/xds/resolver/xds_resolver.go (newConfigSelector) likewise adds
// the clusters of every route to the active clusters, each of which becomes
// a child of the xds_cluster_manager balancer (serviceconfig.go), whose
// picker is what fails an RPC for a cluster without a child. Reachability
// plays no part in either. The route must also be loaded before traffic
// moves: grpc-go applies a route configuration only once it has loaded the
// clusters it names, and then only the newest one, so the xDS server holds
// a route change that starts sending a client traffic to a cluster until
// that client has acknowledged the cluster and its endpoints
// (xds/server/warmload.go). Envoy
// receives clusters through CDS independently of routes, so the route changes
// nothing for it; it never matches it either.

// needsWarmup reports whether a service has a canary to warm: any canary
// pod (ready or not), any traffic or mirroring to the canary, a cohort or a
// sticky split.
func needsWarmup(s Service) bool {
	st := s.Strategy
	if st.CanaryWeight > 0 || st.Mirror > 0 || len(st.Cohorts) > 0 || st.Sticky != nil {
		return true
	}
	return slices.ContainsFunc(s.Endpoints, func(e Endpoint) bool { return e.Track == TrackCanary })
}

// warmupRoute returns the warm-up route of a port naming the given
// clusters (at least one, no repeats), sorted by name. The weights are as
// even as whole basis points allow, the remainder going to the first
// clusters, so each is > 0 and they sum to TotalWeight; they never matter,
// as no request takes the route.
func warmupRoute(namespace, service string, port uint32, clusters []string) Route {
	names := slices.Clone(clusters)
	slices.SortFunc(names, cmp.Compare)
	n := Weight(len(names))
	r := Route{
		Name:    "warmup",
		Kind:    RouteWarmup,
		Headers: []HeaderMatch{{Name: WarmupHeader, Match: MatchExact, Value: WarmupValue(namespace, service, port)}},
	}
	for i, name := range names {
		w := TotalWeight / n
		if Weight(i) < TotalWeight%n {
			w++
		}
		r.Clusters = append(r.Clusters, ClusterWeight{Cluster: name, Weight: w})
	}
	return r
}
