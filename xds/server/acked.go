package server

import "github.com/sluice-dev/sluice/xds/auth"

// Acknowledged reports whether some live stream bound to exactly id has
// acknowledged, at its current or an earlier version, a cluster (CDS) or
// endpoint assignment (EDS) named cluster: load reported by id for that
// cluster can only come from routes Sluice sent it. Streams without an
// identity never count. It is cheap (a map lookup under a read lock): load
// reporting calls it for every locality of every report.
func (s *Server) Acknowledged(id auth.Identity, cluster string) bool {
	t := s.tracker
	t.ackMu.RLock()
	defer t.ackMu.RUnlock()
	return t.acks[id][cluster] > 0
}

// indexAcksLocked records that stream s acknowledged the clusters named in
// contents; t.mu must be held.
func (t *tracker) indexAcksLocked(s *streamState, contents map[string]string) {
	if !s.scope.restricted {
		return
	}
	var fresh []string
	for name := range contents {
		if _, ok := s.ackedClusters[name]; !ok {
			s.ackedClusters[name] = struct{}{}
			fresh = append(fresh, name)
		}
	}
	if len(fresh) == 0 {
		return
	}
	t.ackMu.Lock()
	defer t.ackMu.Unlock()
	byName := t.acks[s.scope.id]
	if byName == nil {
		byName = map[string]int{}
		t.acks[s.scope.id] = byName
	}
	for _, name := range fresh {
		byName[name]++
	}
}

// forgetAcksLocked drops a closing stream's acknowledgements from the
// index; t.mu must be held.
func (t *tracker) forgetAcksLocked(s *streamState) {
	if len(s.ackedClusters) == 0 {
		return
	}
	t.ackMu.Lock()
	defer t.ackMu.Unlock()
	byName := t.acks[s.scope.id]
	for name := range s.ackedClusters {
		if byName[name] <= 1 {
			delete(byName, name)
		} else {
			byName[name]--
		}
	}
	if len(byName) == 0 {
		delete(t.acks, s.scope.id)
	}
}
