package lrs

import (
	"time"

	"github.com/go-logr/logr"

	"github.com/sluice-dev/sluice/xds/auth"
)

// An Ack answers whether a reporter acknowledged a cluster: now, or later
// when the answer has to be asked of another replica. Load reporting never
// waits for a later answer on a stream's receive path: the entries that
// need it are held aside and judged once it comes (see Options.LookupAck).
type Ack interface {
	// Done is nil when the answer is known now, else a channel closed once
	// it is known.
	Done() <-chan struct{}
	// Acked is the answer. Before Done is closed it is false.
	Acked() bool
}

// Known is an answer known at once.
type Known bool

// Done returns nil: the answer is known.
func (Known) Done() <-chan struct{} { return nil }

// Acked returns the answer.
func (k Known) Acked() bool { return bool(k) }

var _ Ack = Known(false)

// Bounds of the entries held for a later answer.
const (
	// maxHeldPerStream bounds the reports of one stream held at once for
	// answers still to come; entries beyond it are not counted (reason
	// RejectAckUnanswered). A client reports once per interval (1s by
	// default) and an answer takes at most the peers' timeout, so a
	// well-behaved stream holds one or two.
	maxHeldPerStream = 4
	// maxHold bounds how long held entries wait for their answers; an
	// answer that has not come by then counts as no.
	maxHold = 5 * time.Second
)

// heldEntry is one locality of a report waiting for its cluster's answer.
type heldEntry struct {
	ack     Ack
	cluster string
	subZone string
	key     Key
	totals  Totals
	// legacyRefused: the locality would be refused as legacy-not-allowed
	// once acknowledged (the check is made when the report arrives).
	legacyRefused bool
}

// heldReports counts one stream's reports held for answers.
type heldReports struct {
	n int
}

// hold judges entries once their answers come, off the receive path, and
// counts their completed requests then (in-flight counts are a gauge that
// the stream's next report carries). It refuses them at once when the
// stream already holds maxHeldPerStream reports.
func (s *Server) hold(held *heldReports, r reporter, entries []heldEntry, log logr.Logger) {
	s.mu.Lock()
	full := held.n >= maxHeldPerStream
	if !full {
		held.n++
	}
	s.mu.Unlock()
	if full {
		for _, e := range entries {
			s.reject(log, RejectAckUnanswered, e.cluster, e.subZone, e.totals.Requests-e.totals.Errors, e.totals.Errors)
		}
		return
	}
	s.metrics.held.Add(float64(len(entries)))
	go func() {
		defer func() {
			s.mu.Lock()
			held.n--
			s.mu.Unlock()
			s.metrics.held.Sub(float64(len(entries)))
			if s.judged != nil {
				s.judged()
			}
		}()
		timeout := time.NewTimer(s.holdFor)
		defer timeout.Stop()
		expired := false
		for _, e := range entries {
			if d := e.ack.Done(); d != nil && !expired {
				select {
				case <-d:
				case <-timeout.C:
					expired = true
				}
			}
		}
		perKey := map[Key]Totals{}
		for _, e := range entries {
			ok, errs := e.totals.Requests-e.totals.Errors, e.totals.Errors
			switch {
			case !answered(e.ack):
				s.reject(log, RejectAckUnanswered, e.cluster, e.subZone, ok, errs)
				continue
			case !e.ack.Acked():
				s.reject(log, RejectUnacknowledged, e.cluster, e.subZone, ok, errs)
				continue
			case e.legacyRefused:
				s.reject(log, RejectLegacyNotAllowed, e.cluster, e.subZone, ok, errs)
				continue
			}
			perKey[e.key] = perKey[e.key].Add(e.totals)
		}
		for k, t := range perKey {
			s.agg.addCounts(r.origin, k, t)
			s.metrics.requests.WithLabelValues(k.Namespace, k.Service, k.Track).Add(float64(t.Requests))
			s.metrics.errors.WithLabelValues(k.Namespace, k.Service, k.Track).Add(float64(t.Errors))
		}
	}()
}

// answered reports whether a's answer is known.
func answered(a Ack) bool {
	d := a.Done()
	if d == nil {
		return true
	}
	select {
	case <-d:
		return true
	default:
		return false
	}
}

// lookup asks the configured source whether id acknowledged cluster.
func (s *Server) lookup(id auth.Identity, cluster string) Ack {
	switch {
	case s.lookupAck != nil:
		return s.lookupAck(id, cluster)
	case s.acknowledged != nil:
		return Known(s.acknowledged(id, cluster))
	}
	return Known(true)
}
