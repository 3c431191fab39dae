package callers

import (
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/xds/lrs"
)

// Service names a logical service: the load of all its tracks and revisions.
type Service struct {
	Namespace string
	Name      string
}

// Load is one calling namespace's totals on one service.
type Load struct {
	Legacy         bool
	Requests       uint64
	Errors         uint64
	CanaryRequests uint64
	CanaryErrors   uint64
}

// Index is the load of every service by calling namespace, with the canary
// part kept per revision so that a service's canary revision picks its own.
type Index map[Service]map[string]*callerLoad

type callerLoad struct {
	legacy   bool
	total    lrs.Totals
	revision map[string]lrs.Totals // canary track only
}

// Build indexes the aggregator's per-origin totals.
func Build(origins map[lrs.Key]lrs.ByOrigin) Index {
	idx := Index{}
	for k, byOrigin := range origins {
		svc := Service{Namespace: k.Namespace, Name: k.Service}
		m := idx[svc]
		if m == nil {
			m = map[string]*callerLoad{}
			idx[svc] = m
		}
		for o, t := range byOrigin {
			ns := Namespace(o)
			c := m[ns]
			if c == nil {
				c = &callerLoad{revision: map[string]lrs.Totals{}}
				m[ns] = c
			}
			c.legacy = c.legacy || o.Class == lrs.ClassLegacy
			c.total = c.total.Add(t)
			if k.Track == "canary" && k.Revision != "" {
				c.revision[k.Revision] = c.revision[k.Revision].Add(t)
			}
		}
	}
	return idx
}

// Namespace is the calling namespace of load reported by origin o: the
// namespace of its identity ("token:web/frontend" → "web", "legacy:web" →
// "web"), v1alpha1.CallersOther for identities the server folded, and
// v1alpha1.CallersUnidentified for streams without one.
func Namespace(o lrs.Origin) string {
	if o.Identity == "" {
		return v1alpha1.CallersUnidentified
	}
	if o.Identity == lrs.OtherIdentities {
		return v1alpha1.CallersOther
	}
	_, rest, ok := strings.Cut(o.Identity, ":")
	if !ok || rest == "" {
		return v1alpha1.CallersOther
	}
	ns, _, _ := strings.Cut(rest, "/")
	if ns == "" || len(ns) > 63 {
		return v1alpha1.CallersOther
	}
	return ns
}

// Loads returns svc's callers with the canary part counted for
// canaryRevision (none when empty).
func (idx Index) Loads(svc Service, canaryRevision string) map[string]Load {
	out := map[string]Load{}
	for ns, c := range idx[svc] {
		l := Load{Legacy: c.legacy, Requests: c.total.Requests, Errors: c.total.Errors}
		if canaryRevision != "" {
			r := c.revision[canaryRevision]
			l.CanaryRequests, l.CanaryErrors = r.Requests, r.Errors
		}
		out[ns] = l
	}
	return out
}

// Status is the bounded status of a service's callers now, given their
// loads and those of the previous write (prev, at prevAt; nil for none):
// the MaxCallers−1 namespaces with the most requests in order, then the
// rest folded into CallersOther. since is when counting began.
func Status(loads, prev map[string]Load, since, prevAt, now time.Time) *v1alpha1.CallerStatus {
	type row struct {
		ns string
		l  Load
		p  Load
	}
	rows := make([]row, 0, len(loads))
	for ns, l := range loads {
		rows = append(rows, row{ns: ns, l: l, p: prev[ns]})
	}
	// Most requests first; names break ties, so the order is stable.
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].l.Requests != rows[j].l.Requests {
			return rows[i].l.Requests > rows[j].l.Requests
		}
		return rows[i].ns < rows[j].ns
	})
	st := &v1alpha1.CallerStatus{Since: metav1.NewTime(since), UpdatedAt: metav1.NewTime(now)}
	if prev != nil && now.After(prevAt) {
		st.Window = metav1.Duration{Duration: now.Sub(prevAt)}
	}
	var other *v1alpha1.CallerLoad
	for i, r := range rows {
		c := v1alpha1.CallerLoad{
			Namespace: r.ns, Legacy: r.l.Legacy,
			Requests: clamp(r.l.Requests), Errors: clamp(r.l.Errors),
			CanaryRequests: clamp(r.l.CanaryRequests), CanaryErrors: clamp(r.l.CanaryErrors),
		}
		if prev != nil {
			c.RecentRequests, c.RecentErrors = delta(r.l.Requests, r.p.Requests), delta(r.l.Errors, r.p.Errors)
		}
		if i < v1alpha1.MaxCallers-1 && r.ns != v1alpha1.CallersOther {
			st.Callers = append(st.Callers, c)
			continue
		}
		if other == nil {
			other = &v1alpha1.CallerLoad{Namespace: v1alpha1.CallersOther}
		}
		other.Legacy = other.Legacy || c.Legacy
		other.Requests = addClamped(other.Requests, c.Requests)
		other.Errors = addClamped(other.Errors, c.Errors)
		other.RecentRequests = addClamped(other.RecentRequests, c.RecentRequests)
		other.RecentErrors = addClamped(other.RecentErrors, c.RecentErrors)
		other.CanaryRequests = addClamped(other.CanaryRequests, c.CanaryRequests)
		other.CanaryErrors = addClamped(other.CanaryErrors, c.CanaryErrors)
	}
	if other != nil {
		st.Callers = append(st.Callers, *other)
	}
	return st
}

// Same reports whether a and b say the same, whenever they were written.
func Same(a, b *v1alpha1.CallerStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !a.Since.Equal(&b.Since) || len(a.Callers) != len(b.Callers) {
		return false
	}
	for i := range a.Callers {
		x, y := a.Callers[i], b.Callers[i]
		// Recent counts change with the window alone; the totals say
		// whether anything happened.
		x.RecentRequests, x.RecentErrors, y.RecentRequests, y.RecentErrors = 0, 0, 0, 0
		if x != y {
			return false
		}
	}
	return true
}

const maxInt64 = uint64(1<<63 - 1)

func clamp(v uint64) int64 {
	if v > maxInt64 {
		return int64(maxInt64)
	}
	return int64(v)
}

// delta is cur − old, or cur when the counter went back (a new leader
// counting afresh).
func delta(cur, old uint64) int64 {
	if cur < old {
		return clamp(cur)
	}
	return clamp(cur - old)
}

func addClamped(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return int64(maxInt64)
}
