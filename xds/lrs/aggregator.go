package lrs

import (
	"maps"
	"math"
	"sort"
	"sync"
	"time"
)

// Key identifies the traffic a load report is attributed to.
type Key struct {
	// Namespace of the service.
	Namespace string
	// Service is the logical service name (label sluice.dev/service).
	Service string
	// Track is "stable" or "canary".
	Track string
	// Revision is the pod template revision that served the load (the
	// locality's sub-zone says it); empty when the report did not name one.
	Revision string
}

// String renders the key as namespace/service/track, with /revision when
// known.
func (k Key) String() string {
	s := k.Namespace + "/" + k.Service + "/" + k.Track
	if k.Revision != "" {
		s += "/" + k.Revision
	}
	return s
}

// Totals are load counts for one key. Requests and Errors are cumulative
// counters of completed requests (an error is a completed request with a
// non-OK outcome, so Errors <= Requests); InFlight and Issued follow the same
// rules: InFlight is the latest sum of requests in progress, Issued is a
// cumulative counter of requests sent.
type Totals struct {
	Requests uint64
	Errors   uint64
	Issued   uint64
	InFlight uint64
}

// Add returns the sum of t and o, field by field, saturating at the largest
// uint64 rather than wrapping: a counter that wrapped would look like a
// restart and hide the errors before it.
func (t Totals) Add(o Totals) Totals {
	return Totals{
		Requests: addSat(t.Requests, o.Requests),
		Errors:   addSat(t.Errors, o.Errors),
		Issued:   addSat(t.Issued, o.Issued),
		InFlight: addSat(t.InFlight, o.InFlight),
	}
}

func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint64
}

// Max returns the element-wise maximum of the counters of t and o and the
// in-flight value of o (the newer observation). It is the merge of two
// observations of the same grow-only source: commutative for the counters,
// idempotent, and never decreasing.
func (t Totals) Max(o Totals) Totals {
	out := Totals{InFlight: o.InFlight}
	out.Requests = max(t.Requests, o.Requests)
	out.Errors = max(t.Errors, o.Errors)
	out.Issued = max(t.Issued, o.Issued)
	return out
}

// ErrorRate is Errors/Requests, or 0 when there were no requests.
func (t Totals) ErrorRate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return float64(t.Errors) / float64(t.Requests)
}

// Sub returns the counter increase from older to t, with the in-flight value
// of t. A counter that went backwards (a source restarted) yields its current
// value, so a delta is never negative.
func (t Totals) Sub(older Totals) Totals {
	d := func(now, then uint64) uint64 {
		if now < then {
			return now
		}
		return now - then
	}
	return Totals{
		Requests: d(t.Requests, older.Requests),
		Errors:   d(t.Errors, older.Errors),
		Issued:   d(t.Issued, older.Issued),
		InFlight: t.InFlight,
	}
}

// Attribution maps a reported upstream cluster and the locality's sub_zone to
// the key it belongs to. It returns false for traffic Sluice does not manage.
// Either the cluster name or the sub_zone may carry the track.
type Attribution func(cluster, subZone string) (Key, bool)

// Mark is a point-in-time copy of an aggregator's totals, used to compute the
// load of a recent window with [Aggregator.Since].
type Mark struct {
	// At is when the mark was taken.
	At     time.Time
	totals map[Key]Totals
}

// Aggregator holds the cumulative totals of this replica's own load reports
// (local) and the latest totals forwarded by other replicas (remote), per key
// and per [Origin]. It is safe for concurrent use.
type Aggregator struct {
	mu sync.Mutex
	// local counters; inFlight is tracked per stream, since it is a gauge that
	// each client reports for itself.
	local    map[Key]ByOrigin
	inFlight map[int64]streamInFlight
	// remote holds per source the merged totals it forwarded, and seen when
	// it last forwarded.
	remote map[string]map[Key]ByOrigin
	seen   map[string]time.Time
	now    func() time.Time
}

// streamInFlight is one stream's latest in-flight counts, per key.
type streamInFlight struct {
	origin Origin
	keys   map[Key]uint64
}

// SourceStaleAfter is how long the in-flight counts of a source that stopped
// forwarding (a replica that died) still count. Its counters always count.
const SourceStaleAfter = 10 * time.Second

// NewAggregator returns an empty aggregator.
func NewAggregator() *Aggregator {
	return &Aggregator{
		local:    map[Key]ByOrigin{},
		inFlight: map[int64]streamInFlight{},
		remote:   map[string]map[Key]ByOrigin{},
		seen:     map[string]time.Time{},
		now:      time.Now,
	}
}

// add records completed counts of one report for key k from stream id, whose
// reporter is o, and the stream's current in-flight count for k.
func (a *Aggregator) add(stream int64, o Origin, k Key, t Totals) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := originsOf(a.local, k)
	o = m.admit(o)
	m[o] = m[o].Add(Totals{Requests: t.Requests, Errors: t.Errors, Issued: t.Issued})
	s, ok := a.inFlight[stream]
	if !ok {
		s = streamInFlight{origin: o, keys: map[Key]uint64{}}
		a.inFlight[stream] = s
	}
	s.keys[k] = t.InFlight
}

// addCounts records the completed counts of t for key k from a reporter o,
// leaving every stream's in-flight counts alone: a report judged late
// (held for an answer) is older than its stream's latest in-flight count.
func (a *Aggregator) addCounts(o Origin, k Key, t Totals) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := originsOf(a.local, k)
	o = m.admit(o)
	m[o] = m[o].Add(Totals{Requests: t.Requests, Errors: t.Errors, Issued: t.Issued})
}

// resetInFlight records that stream id reported no request in progress for any
// key it reported before this report. grpc-go leaves clusters with no load out
// of a report, so absence means zero.
func (a *Aggregator) resetInFlight(stream int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.inFlight[stream].keys {
		a.inFlight[stream].keys[k] = 0
	}
}

// dropStream forgets the in-flight contribution of a closed stream.
func (a *Aggregator) dropStream(stream int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.inFlight, stream)
}

// localLocked returns the local totals per origin with in-flight sums; a.mu
// must be held.
func (a *Aggregator) localLocked() map[Key]ByOrigin {
	out := make(map[Key]ByOrigin, len(a.local))
	for k, m := range a.local {
		out[k] = maps.Clone(m)
	}
	for _, s := range a.inFlight {
		for k, n := range s.keys {
			m := originsOf(out, k)
			o := m.admit(s.origin)
			t := m[o]
			t.InFlight += n
			m[o] = t
		}
	}
	return out
}

// Local returns the totals of the load reports this replica received itself.
func (a *Aggregator) Local() map[Key]Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	return sumOrigins(a.localLocked())
}

// LocalOrigins returns the totals of the load reports this replica received
// itself, per origin: what it forwards to its peers.
func (a *Aggregator) LocalOrigins() map[Key]ByOrigin {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.localLocked()
}

// Totals returns, per key, the sum of the local totals and the latest totals
// of every source merged with [Aggregator.Merge], over every origin. On the
// leader this is the fleet-wide load the analysis must judge. In-flight
// counts of a source not heard from for SourceStaleAfter are left out.
func (a *Aggregator) Totals() map[Key]Totals {
	return sumOrigins(a.Origins())
}

// Origins is Totals per origin: what each reporting identity contributed,
// summed over this replica and every merged source.
func (a *Aggregator) Origins() map[Key]ByOrigin {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.localLocked()
	now := a.now()
	for source, keys := range a.remote {
		stale := now.Sub(a.seen[source]) > SourceStaleAfter
		for k, m := range keys {
			dst := originsOf(out, k)
			for o, t := range m {
				if stale {
					t.InFlight = 0
				}
				o = dst.admit(o)
				dst[o] = dst[o].Add(t)
			}
		}
	}
	return out
}

// BySource is Origins split by the replica incarnation that received the
// reports: this replica's own under local, every merged source under its
// name. Each source's counters only grow (a restarted replica forwards under
// a new name), which is what lets the analysis persist them and merge two
// readings of one source by taking the larger. In-flight counts are left out.
func (a *Aggregator) BySource(local string) map[string]map[Key]ByOrigin {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]map[Key]ByOrigin, len(a.remote)+1)
	counters := func(in map[Key]ByOrigin) map[Key]ByOrigin {
		m := make(map[Key]ByOrigin, len(in))
		for k, origins := range in {
			c := make(ByOrigin, len(origins))
			for o, t := range origins {
				c[o] = Totals{Requests: t.Requests, Errors: t.Errors, Issued: t.Issued}
			}
			m[k] = c
		}
		return m
	}
	out[local] = counters(a.local)
	for source, keys := range a.remote {
		if source == local {
			continue // a replica never merges its own forwards; keep its local counters if it did
		}
		out[source] = counters(keys)
	}
	return out
}

// originsOf returns k's origins in m, adding an empty entry if there is none.
func originsOf(m map[Key]ByOrigin, k Key) ByOrigin {
	o := m[k]
	if o == nil {
		o = ByOrigin{}
		m[k] = o
	}
	return o
}

// sumOrigins sums each key's origins.
func sumOrigins(in map[Key]ByOrigin) map[Key]Totals {
	out := make(map[Key]Totals, len(in))
	for k, m := range in {
		var t Totals
		for _, o := range m {
			t = t.Add(o)
		}
		out[k] = t
	}
	return out
}

// Merge records the cumulative totals that another replica (source) reported
// for its own clients, per key and origin. Merging is idempotent and
// order-insensitive for the counters: for each key and origin the
// element-wise maximum of what is known and what arrived is kept, so a
// repeated or reordered forward never double counts. A source must therefore
// send cumulative totals, and a restarted replica must use a new source name.
func (a *Aggregator) Merge(source string, totals map[Key]ByOrigin) {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := a.remote[source]
	if keys == nil {
		keys = map[Key]ByOrigin{}
		a.remote[source] = keys
	}
	for k, in := range totals {
		m := originsOf(keys, k)
		for o, t := range in {
			o = m.admit(o)
			m[o] = m[o].Max(t)
		}
	}
	a.seen[source] = a.now()
}

// Sources returns the names of the sources merged so far, sorted.
func (a *Aggregator) Sources() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.remote))
	for s := range a.remote {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Mark captures the current totals (local and merged) for a later
// [Aggregator.Since].
func (a *Aggregator) Mark() Mark {
	return Mark{At: a.now(), totals: a.Totals()}
}

// Since returns, per key, the counts accumulated since m was taken, with the
// current in-flight value. Keys without traffic since m are included with zero
// counts when they existed at m.
func (a *Aggregator) Since(m Mark) map[Key]Totals {
	now := a.Totals()
	out := make(map[Key]Totals, len(now))
	for k, t := range now {
		out[k] = t.Sub(m.totals[k])
	}
	for k := range m.totals {
		if _, ok := out[k]; !ok {
			out[k] = Totals{}
		}
	}
	return out
}

// SortedKeys returns the keys of totals in a stable order.
func SortedKeys(totals map[Key]Totals) []Key {
	keys := make([]Key, 0, len(totals))
	for k := range totals {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Track != b.Track {
			return a.Track < b.Track
		}
		return a.Revision < b.Revision
	})
	return keys
}
