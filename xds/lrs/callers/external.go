package callers

import (
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/lrs"
)

// Externals returns the load on every external dependency (clusters of
// router.TrackExternal) by calling namespace. An external dependency is
// visible to its own namespace only, so its callers are that namespace's
// identities (and the legacy listener's, if the namespace opted in).
func Externals(origins map[lrs.Key]lrs.ByOrigin) map[Service]map[string]Load {
	out := map[Service]map[string]Load{}
	for k, byOrigin := range origins {
		if k.Track != string(router.TrackExternal) {
			continue
		}
		svc := Service{Namespace: k.Namespace, Name: k.Service}
		m := out[svc]
		if m == nil {
			m = map[string]Load{}
			out[svc] = m
		}
		for o, t := range byOrigin {
			ns := Namespace(o)
			l := m[ns]
			l.Legacy = l.Legacy || o.Class == lrs.ClassLegacy
			l.Requests = addSat(l.Requests, t.Requests)
			l.Errors = addSat(l.Errors, t.Errors)
			m[ns] = l
		}
	}
	return out
}

func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}
