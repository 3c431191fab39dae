package translate

import (
	"fmt"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/router"
)

// Form is one encoding of the route configurations, for one generation of
// xDS clients. Listeners, clusters and endpoints are the same in every form;
// only route configurations differ, and only where a client generation
// reads the API differently (see docs/traffic.md, "Client compatibility").
type Form string

const (
	// FormCurrent is what clients that read today's API get: header
	// matchers in `string_match`, and weighted clusters whose weights are
	// summed by the client (no `total_weight`). It is the default.
	FormCurrent Form = "current"
	// FormLegacy is for clients that read weighted clusters against a
	// `total_weight` defaulting to 100 and header matchers only in the
	// fields that predate `string_match`: gRPC C-core (and the languages
	// wrapping it) and grpc-js. Weighted clusters carry `total_weight`
	// (only when the weights are not whole percentages, see
	// [weightedClusters]); exact and regex header matchers use the
	// deprecated `exact_match` and `safe_regex_match`, which every client
	// still reads.
	FormLegacy Form = "legacy"
	// FormLegacyNoRing is FormLegacy without ring hash, for gRPC C-core:
	// python3-grpcio 1.51.1 (Debian) crashed with a segmentation fault on
	// the first RPC routed to a RING_HASH cluster, whatever its ring size,
	// locality config or hash policy. Its proxyless routes send sticky
	// users to the stable cluster and its warm-up route leaves the sticky
	// cluster out, so the client never loads one; the limit says so.
	FormLegacyNoRing Form = "legacy-no-ring-hash"
)

// Forms lists every form, FormCurrent first.
var Forms = []Form{FormCurrent, FormLegacy, FormLegacyNoRing}

// Valid reports whether f is a known form.
func (f Form) Valid() bool { return slices.Contains(Forms, f) }

// legacy reports whether the form uses the legacy field encodings.
func (f Form) legacy() bool { return f == FormLegacy || f == FormLegacyNoRing }

// Limit is a feature of the plan that clients of a form cannot express, and
// what they do instead. The data plane never fails requests because of it:
// the route sends them to the stable version.
type Limit struct {
	// Route is the RouteConfiguration name.
	Route string `json:"route"`
	// Namespace and Service name the service whose route is limited.
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	// Feature is what the clients cannot do, e.g. "sticky split by cookie
	// session".
	Feature string `json:"feature"`
	// Instead is what the clients get, e.g. "stable version".
	Instead string `json:"instead"`
}

// String renders the limit for a status line.
func (l Limit) String() string {
	return fmt.Sprintf("%s/%s (%s): %s not supported, gets the %s", l.Namespace, l.Service, l.Route, l.Feature, l.Instead)
}

// weightedClusters encodes the clusters of a weighted route. When every
// weight is a whole percentage the weights are written in percent: they
// then sum to 100, which every client reads correctly, whether it sums the
// weights (grpc-go, Envoy ≥ 1.24) or defaults total_weight to 100 (gRPC
// C-core, grpc-js, older Envoy). Otherwise (steps such as 0.5%) they are
// written in basis points, and FormLegacy adds total_weight = 10,000 for the
// clients that need it.
func weightedClusters(cs []router.ClusterWeight, form Form) *routev3.WeightedCluster {
	unit := router.Weight(1)
	whole := true
	var sum uint32
	for _, cw := range cs {
		if cw.Weight%100 != 0 {
			whole = false
		}
	}
	if whole {
		unit = 100
	}
	wc := &routev3.WeightedCluster{}
	for _, cw := range cs {
		w := uint32(cw.Weight / unit)
		sum += w
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   cw.Cluster,
			Weight: wrapperspb.UInt32(w),
		})
	}
	if form.legacy() && sum != 100 {
		wc.TotalWeight = wrapperspb.UInt32(sum) //nolint:staticcheck // deprecated, but what legacy clients read
	}
	return wc
}

// headerMatcher encodes one header match in the fields the form's clients
// read.
func headerMatcher(h router.HeaderMatch, form Form) (*routev3.HeaderMatcher, error) {
	hm := &routev3.HeaderMatcher{Name: h.Name}
	legacy := form.legacy()
	switch {
	case h.Match == router.MatchExact && legacy:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: h.Value} //nolint:staticcheck // legacy clients
	case h.Match == router.MatchExact:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Value},
		}}
	case h.Match == router.MatchRegex && legacy:
		// The Envoy API of the 1.2x era requires the engine to be named
		// (e2e/envoyapi decodes the goldens with it); every reader
		// ignores or accepts google_re2.
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{ //nolint:staticcheck // legacy clients
			Regex:      h.Value,
			EngineType: &matcherv3.RegexMatcher_GoogleRe2{GoogleRe2: &matcherv3.RegexMatcher_GoogleRE2{}}, //nolint:staticcheck // required by older Envoy APIs
		}}
	case h.Match == router.MatchRegex:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value}},
		}}
	case h.Match == router.MatchPresent:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	default:
		return nil, fmt.Errorf("header %q: unknown match %q", h.Name, h.Match)
	}
	return hm, nil
}
