package translate

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-dev/sluice/router"
)

// routes translates the ordered route list of a port in a form. The order
// is kept as is: the data plane takes the first matching route, and the
// plan's order (cohort, sticky, default) is the policy.
//
// Proxyless gRPC clients cannot hash a cookie (gRPC's ring hash reads
// headers and the channel id only; any other hash policy leaves the request
// without a hash and the client picks a random ring entry, so users would
// not stick). For them a sticky route keyed by a cookie sends its requests
// to the stable cluster instead, and the returned features name what was
// left out, so that the clients are told.
func routes(p router.PortPlan, form Form, proxyless bool) ([]*routev3.Route, []string, error) {
	out := make([]*routev3.Route, 0, len(p.Routes))
	var limited []string
	noRing := proxyless && form == FormLegacyNoRing
	for _, r := range p.Routes {
		if noRing && r.Kind == router.RouteWarmup {
			r.Clusters = slices.DeleteFunc(slices.Clone(r.Clusters), func(cw router.ClusterWeight) bool {
				id, err := router.ParseClusterName(cw.Cluster)
				return err == nil && id.Track == router.TrackSticky
			})
		}
		if noRing && r.Kind == router.RouteSticky && r.Hash != nil {
			stable, err := stableOf(r)
			if err != nil {
				return nil, nil, err
			}
			limited = append(limited, fmt.Sprintf("sticky split by %s %q (no ring hash)", r.Hash.Source, r.Hash.Name))
			r.Hash = nil
			r.Clusters = []router.ClusterWeight{{Cluster: stable, Weight: router.TotalWeight}}
		}
		if proxyless && r.Kind == router.RouteSticky && r.Hash != nil && r.Hash.Source == router.SourceCookie {
			stable, err := stableOf(r)
			if err != nil {
				return nil, nil, err
			}
			limited = append(limited, fmt.Sprintf("sticky split by cookie %q", r.Hash.Name))
			r.Hash = nil
			r.Clusters = []router.ClusterWeight{{Cluster: stable, Weight: router.TotalWeight}}
		}
		er, err := route(r, p.Protocol, form)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, er)
	}
	return out, limited, nil
}

// stableOf returns the stable cluster of the service a route belongs to.
func stableOf(r router.Route) (string, error) {
	if len(r.Clusters) == 0 {
		return "", fmt.Errorf("route %q has no cluster", r.Name)
	}
	id, err := router.ParseClusterName(r.Clusters[0].Cluster)
	if err != nil {
		return "", fmt.Errorf("route %q: %w", r.Name, err)
	}
	id.Track = router.TrackStable
	return id.Name(), nil
}

// route translates one route. On gRPC ports Envoy's default 15s route
// timeout is switched off (timeout 0s): it would cut long-lived streams, and
// gRPC clients carry their own deadlines. grpc-go ignores this field.
func route(r router.Route, proto router.Protocol, form Form) (*routev3.Route, error) {
	match := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	for _, h := range r.Headers {
		hm, err := headerMatcher(h, form)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.Name, err)
		}
		match.Headers = append(match.Headers, hm)
	}
	action := &routev3.RouteAction{}
	if proto == router.ProtocolGRPC {
		action.Timeout = durationpb.New(0)
	}
	switch len(r.Clusters) {
	case 0:
		return nil, fmt.Errorf("route %q has no cluster", r.Name)
	case 1:
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: r.Clusters[0].Cluster}
	default:
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: weightedClusters(r.Clusters, form)}
	}
	if h := r.Hash; h != nil {
		switch h.Source {
		case router.SourceHeader:
			action.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
				Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: h.Name},
			}}}
		case router.SourceCookie:
			// No ttl: Envoy hashes an existing cookie and never sets one.
			action.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
				Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: h.Name},
			}}}
		default:
			return nil, fmt.Errorf("route %q: unknown hash source %q", r.Name, h.Source)
		}
	}
	if m := r.Mirror; m != nil {
		action.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{
			Cluster: m.Cluster,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
				Numerator:   uint32(m.Fraction),
				Denominator: typev3.FractionalPercent_TEN_THOUSAND,
			}},
		}}
	}
	return &routev3.Route{
		Name:   r.Name,
		Match:  match,
		Action: &routev3.Route_Route{Route: action},
	}, nil
}
