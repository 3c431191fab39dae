package translate

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/router"
)

// routes translates the ordered route list of a port. The order is kept as
// is: the data plane takes the first matching route, and the plan's order
// (cohort, sticky, default) is the policy.
func routes(p router.PortPlan) ([]*routev3.Route, error) {
	out := make([]*routev3.Route, 0, len(p.Routes))
	for _, r := range p.Routes {
		er, err := route(r, p.Protocol)
		if err != nil {
			return nil, err
		}
		out = append(out, er)
	}
	return out, nil
}

// route translates one route. On gRPC ports Envoy's default 15s route
// timeout is switched off (timeout 0s): it would cut long-lived streams, and
// gRPC clients carry their own deadlines. grpc-go ignores this field.
func route(r router.Route, proto router.Protocol) (*routev3.Route, error) {
	match := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	for _, h := range r.Headers {
		hm, err := headerMatcher(h)
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
		wc := &routev3.WeightedCluster{}
		for _, cw := range r.Clusters {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name:   cw.Cluster,
				Weight: wrapperspb.UInt32(uint32(cw.Weight)),
			})
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
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

func headerMatcher(h router.HeaderMatch) (*routev3.HeaderMatcher, error) {
	hm := &routev3.HeaderMatcher{Name: h.Name}
	switch h.Match {
	case router.MatchExact:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Value},
		}}
	case router.MatchRegex:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value}},
		}}
	case router.MatchPresent:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	default:
		return nil, fmt.Errorf("header %q: unknown match %q", h.Name, h.Match)
	}
	return hm, nil
}
