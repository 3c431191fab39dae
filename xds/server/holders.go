package server

import (
	"maps"
	"slices"
	"sync"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/router"
)

// Who still routes to a cluster.
//
// Before a canary is deleted, Sluice asks which proxies may still send it
// traffic although they do not carry the routes published now: those that
// rejected the current routes (they keep their last acknowledged ones), and
// those whose stream closed recently (a proxy that reconnects keeps routing
// by what it last acknowledged until it takes the new routes). The answer is
// by content: the clusters the acknowledged route configurations send
// ordinary traffic to, never by version strings, of which a route has
// several (per client form and per namespace view).

// Holder is a proxy whose last acknowledged routes send traffic to one of
// the clusters asked about, and which does not carry the published routes.
type Holder struct {
	// Node is the proxy's node id.
	Node string `json:"node"`
	// Replica is the Sluice replica the proxy is (or was) connected to;
	// set by whoever gathers the replicas' answers.
	Replica string `json:"replica,omitempty"`
	// Disconnected is set for a proxy whose stream closed (a tombstone);
	// otherwise it is connected and rejected the published routes.
	Disconnected bool `json:"disconnected,omitempty"`
	// Since is when it rejected the routes, or when its stream closed.
	Since time.Time `json:"since"`
}

// maxRouteRefs bounds the route contents whose clusters are remembered; a
// content forgotten (or never seen, after a restart) counts as reaching
// every cluster, which only makes a deletion wait, bounded.
const maxRouteRefs = 8192

// maxTombstones bounds the disconnected proxies remembered; the oldest go
// first.
const maxTombstones = 16384

// routeRefs remembers, per route configuration content version, the
// clusters its routes send ordinary traffic to.
type routeRefs struct {
	mu sync.Mutex
	m  map[string][]string
	// named are the clusters any route of the content names, warm-up
	// routes included (see namedClusters).
	named map[string][]string
	order []string
}

func newRouteRefs() *routeRefs {
	return &routeRefs{m: map[string][]string{}, named: map[string][]string{}}
}

func (r *routeRefs) add(content string, m proto.Message) {
	rc, ok := m.(*routev3.RouteConfiguration)
	if !ok {
		return
	}
	refs, named := trafficClusters(rc), namedClusters(rc)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[content]; ok {
		return
	}
	r.m[content], r.named[content] = refs, named
	r.order = append(r.order, content)
	if len(r.order) > maxRouteRefs {
		delete(r.m, r.order[0])
		delete(r.named, r.order[0])
		r.order = r.order[1:]
	}
}

// getNamed returns the clusters any route of a content names.
func (r *routeRefs) getNamed(content string) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	named, ok := r.named[content]
	return named, ok
}

// namedClusters lists every cluster a route of rc names, whatever its
// weight and whether or not a request can take the route: the clusters a
// proxyless gRPC client loads when it applies rc. A route choosing its
// cluster from a header may name any: it is listed as "*".
func namedClusters(rc *routev3.RouteConfiguration) []string {
	set := map[string]struct{}{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			a := r.GetRoute()
			if c := a.GetCluster(); c != "" {
				set[c] = struct{}{}
			}
			if a.GetClusterHeader() != "" || a.GetClusterSpecifierPlugin() != "" || a.GetInlineClusterSpecifierPlugin() != nil {
				set["*"] = struct{}{}
			}
			for _, mp := range a.GetRequestMirrorPolicies() {
				set[mp.GetCluster()] = struct{}{}
			}
			for _, cw := range a.GetWeightedClusters().GetClusters() {
				// grpc-go drops entries of weight 0 while parsing.
				if cw.GetWeight() == nil || cw.GetWeight().GetValue() > 0 {
					set[cw.GetName()] = struct{}{}
				}
			}
		}
	}
	return sortedKeys(set)
}

func (r *routeRefs) get(content string) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	refs, ok := r.m[content]
	return refs, ok
}

// trafficClusters lists the clusters rc's routes may send requests to: a
// route's cluster, its weighted clusters of non-zero weight and its mirror
// clusters. Warm-up routes (matched only by router.WarmupHeader, which no
// client sends) carry no traffic. A route choosing its cluster from a
// header may reach any: it is listed as "*".
func trafficClusters(rc *routev3.RouteConfiguration) []string {
	set := map[string]struct{}{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if warmupOnly(r.GetMatch()) {
				continue
			}
			a := r.GetRoute()
			if a == nil {
				continue
			}
			if c := a.GetCluster(); c != "" {
				set[c] = struct{}{}
			}
			if a.GetClusterHeader() != "" || a.GetClusterSpecifierPlugin() != "" || a.GetInlineClusterSpecifierPlugin() != nil {
				set["*"] = struct{}{}
			}
			for _, cw := range a.GetWeightedClusters().GetClusters() {
				if cw.GetWeight() == nil || cw.GetWeight().GetValue() > 0 {
					set[cw.GetName()] = struct{}{}
				}
			}
			for _, mp := range a.GetRequestMirrorPolicies() {
				set[mp.GetCluster()] = struct{}{}
			}
		}
	}
	return sortedKeys(set)
}

func warmupOnly(m *routev3.RouteMatch) bool {
	for _, h := range m.GetHeaders() {
		if h.GetName() == router.WarmupHeader && !h.GetInvertMatch() && !h.GetTreatMissingHeaderAsEmpty() {
			return true
		}
	}
	return false
}

// tombstone is what a proxy whose stream closed last acknowledged of its
// route configurations.
type tombstone struct {
	routes map[string]string
	at     time.Time
}

// buryLocked keeps a tombstone for a closing stream that carried routes;
// t.mu must be held.
func (t *tracker) buryLocked(s *streamState) {
	id := s.node.GetId()
	ts := s.types[resource.RouteType]
	if id == "" || ts == nil || len(ts.acked) == 0 || t.tombstoneTTL <= 0 {
		return
	}
	t.tombstones[id] = tombstone{routes: maps.Clone(ts.acked), at: t.now()}
	if len(t.tombstones) > maxTombstones {
		oldest := ""
		for id, tb := range t.tombstones {
			if oldest == "" || tb.at.Before(t.tombstones[oldest].at) {
				oldest = id
			}
		}
		delete(t.tombstones, oldest)
	}
}

// Holders lists, sorted by node, the proxies of this replica that may still
// send traffic to one of clusters through routes (route configuration
// names): connected proxies that rejected the published content of one of
// routes and whose acknowledged content of routes reaches clusters, and
// proxies whose stream closed within the tombstone bound (Options.StaleAfter)
// whose last acknowledged content did, unless they are connected again.
// Route contents are judged by the clusters they send traffic to; a content
// this server does not know counts as reaching them.
func (s *Server) Holders(routes, clusters []string) []Holder {
	want := map[string]bool{"*": true}
	for _, c := range clusters {
		want[c] = true
	}
	reaches := func(acked map[string]string) bool {
		for _, name := range routes {
			c, ok := acked[name]
			if !ok {
				continue
			}
			refs, known := s.refs.get(c)
			if !known || slices.ContainsFunc(refs, func(r string) bool { return want[r] }) {
				return true
			}
		}
		return false
	}
	t := s.tracker
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var out []Holder
	live := map[string]bool{}
	for _, st := range t.streams {
		live[st.node.GetId()] = true
		ts := st.types[resource.RouteType]
		if ts == nil {
			continue
		}
		var since time.Time
		for _, name := range routes {
			if at, ok := ts.nackedAt[name]; ok && (since.IsZero() || at.Before(since)) {
				since = at
			}
		}
		if !since.IsZero() && reaches(ts.acked) {
			out = append(out, Holder{Node: proxyName(st), Since: since})
		}
	}
	for id, tb := range t.tombstones {
		switch {
		case now.Sub(tb.at) >= t.tombstoneTTL:
			delete(t.tombstones, id)
		case !live[id] && reaches(tb.routes):
			out = append(out, Holder{Node: id, Disconnected: true, Since: tb.at})
		}
	}
	slices.SortFunc(out, func(a, b Holder) int {
		if a.Node != b.Node {
			if a.Node < b.Node {
				return -1
			}
			return 1
		}
		return a.Since.Compare(b.Since)
	})
	return out
}
