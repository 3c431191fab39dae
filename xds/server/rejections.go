package server

import (
	"cmp"
	"slices"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-dev/sluice/internal/text"
)

// Rejection is a NACK by one proxy that is still in force: the proxy does
// not carry the published content of a resource it rejected.
type Rejection struct {
	// Node is the proxy's node id, at most 253 bytes.
	Node string `json:"node"`
	// Replica is the replica the proxy is connected to; set by whoever
	// gathers rejections from several replicas.
	Replica string `json:"replica,omitempty"`
	// TypeURL is the type of the rejected response.
	TypeURL string `json:"typeUrl"`
	// Resources are the rejected resources asked about, sorted.
	Resources []string `json:"resources"`
	// Message is the proxy's error detail, at most text.MaxMessage bytes.
	Message string `json:"message"`
	// At is when the rejection arrived.
	At time.Time `json:"at"`
}

// maxPeerRejections bounds the rejections one replica names in a
// ProxySync answer (and the resources named in each).
const maxPeerRejections = 16

// Rejections lists this replica's proxies' rejections in force of the
// resources named, by type URL, in names, sorted by node and type. A
// proxy that rejected a resource and carries its published content since
// is not listed.
func (s *Server) Rejections(names map[string][]string) []Rejection {
	asked := map[string]map[string]bool{}
	for t, ns := range names {
		asked[t] = map[string]bool{}
		for _, n := range ns {
			asked[t][n] = true
		}
	}
	var out []Rejection
	for _, p := range s.Proxies() {
		for _, ts := range p.Types {
			if ts.LastNack == nil {
				continue
			}
			var rejected []string
			for _, name := range ts.LastNack.Resources {
				if !asked[ts.TypeURL][name] {
					continue
				}
				if v, ok := s.FormVersion(p.Form, ts.TypeURL, name); ok && ts.Acked[name] == v {
					continue // fixed since: the proxy carries what is published
				}
				rejected = append(rejected, name)
			}
			if len(rejected) > 0 {
				slices.Sort(rejected)
				out = append(out, Rejection{Node: text.Truncate(p.NodeID, 253), TypeURL: ts.TypeURL, Resources: rejected,
					Message: text.Truncate(ts.LastNack.Message, text.MaxMessage), At: ts.LastNack.At})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Rejection) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.TypeURL, b.TypeURL))
	})
	return out
}

// RouteNackDetails are, for the proxies named in nodes, the details of
// their last rejection of route configurations, "<node> on <replica>:
// <message>" (replica names this replica), sorted, each message at most
// text.MaxMessage bytes.
func (s *Server) RouteNackDetails(nodes []string, replica string) []string {
	if len(nodes) == 0 {
		return nil
	}
	var out []string
	for _, p := range s.Proxies() {
		if !slices.Contains(nodes, p.NodeID) {
			continue
		}
		for _, ts := range p.Types {
			if ts.TypeURL == resource.RouteType && ts.LastNack != nil {
				out = append(out, text.Truncate(p.NodeID, 253)+" on "+text.Truncate(replica, 253)+": "+text.Truncate(ts.LastNack.Message, text.MaxMessage))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// boundRejections keeps at most maxPeerRejections rejections, each naming
// at most maxPeerRejections resources, and says how many were left out.
func boundRejections(rs []Rejection) ([]Rejection, int) {
	omitted := max(0, len(rs)-maxPeerRejections)
	rs = rs[:min(len(rs), maxPeerRejections)]
	for i := range rs {
		rs[i].Resources = rs[i].Resources[:min(len(rs[i].Resources), maxPeerRejections)]
	}
	return rs, omitted
}
