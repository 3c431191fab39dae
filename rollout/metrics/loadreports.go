package metrics

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Key names one revision of one track of one service in the load-report totals, as reported by one origin.
type Key struct {
	Namespace, Service, Track string
	// Revision is the pod template revision that served the requests; empty when the reports did not say.
	Revision string
	// Origin names who reported the requests (e.g. "token:shop/frontend", "legacy:shop"); empty when the
	// reporter proved no identity (a server that does not authenticate). Samples sum every origin.
	Origin string
	// Legacy is true for requests reported through the plaintext legacy listener: they count for holding and
	// rolling back, never as promotion evidence.
	Legacy bool
	// Source names the controller incarnation (replica name and start) that received the reports; empty when
	// the totals do not say. One source's counters only grow: a restarted replica counts under a new name.
	Source string
}

// matches reports whether k holds requests q asks about.
func (k Key) matches(q Query) bool {
	return k.Namespace == q.Namespace && k.Service == q.Service && k.Track == q.Track &&
		(q.Revision == "" || k.Revision == q.Revision)
}

// Totals are cumulative counters since some origin; they only grow, except when their producer restarts.
type Totals struct {
	Requests, Errors uint64
}

// LoadReports is a Source over the data plane's load reports. It reads cumulative per-track totals (summed over
// every replica, see DESIGN §3) through a function, keeps timestamped snapshots for Retention, and answers a
// Query with the increase between the newest snapshot and the newest one at least Window older. A counter that
// went down (its producer restarted) counts from zero again, the way Prometheus' increase() treats resets.
//
// Record takes the snapshots; Run calls it on a ticker. LoadReports is safe for concurrent use.
type LoadReports struct {
	totals    func() map[Key]Totals
	retention time.Duration

	mu    sync.Mutex
	index keyIndex
	snaps []snapshot // oldest first
	// bases holds, per key and Query.Since, the totals at that instant, captured while the history still held
	// it: a canary's analysis counts since the canary began, however long ago that is.
	bases map[baseKey]base
}

// baseKey names the totals of one key at one instant.
type baseKey struct {
	key   Key
	since time.Time
}

// base is a captured starting point. exact is false when the history began after since while the key already
// had counts: the span then starts at the oldest snapshot, at.
type base struct {
	totals   Totals
	at       time.Time
	exact    bool
	lastUsed time.Time
}

var _ Source = (*LoadReports)(nil)

// NewLoadReports returns a LoadReports over totals keeping retention of history (at least the longest window
// the analysis asks for, e.g. the longest step interval).
func NewLoadReports(totals func() map[Key]Totals, retention time.Duration) (*LoadReports, error) {
	if totals == nil {
		return nil, fmt.Errorf("load reports: totals function is nil")
	}
	if retention < time.Second {
		return nil, fmt.Errorf("load reports: retention %v: want at least 1s", retention)
	}
	return &LoadReports{totals: totals, retention: retention, bases: map[baseKey]base{}}, nil
}

// Record takes a snapshot of the totals at now and drops snapshots no window within the retention needs.
// A now not after the newest snapshot is rejected, so the history stays ordered.
func (l *LoadReports) Record(now time.Time) error {
	current := l.totals()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.snaps); n > 0 && !now.After(l.snaps[n-1].at) {
		return fmt.Errorf("load reports: snapshot at %v is not after the newest at %v", now, l.snaps[n-1].at)
	}
	l.snaps = append(l.snaps, newSnapshot(now, current, &l.index))
	// Keep the newest snapshot at or before now-retention as the base for the longest window.
	cut := 0
	for i, s := range l.snaps {
		if !s.at.After(now.Add(-l.retention)) {
			cut = i
		}
	}
	l.snaps = append([]snapshot(nil), l.snaps[cut:]...)
	// A starting point no query asked for over a whole retention belongs to an analysis that ended.
	for k, b := range l.bases {
		if now.Sub(b.lastUsed) > l.retention {
			delete(l.bases, k)
		}
	}
	return nil
}

// Run records a snapshot every interval until ctx ends.
func (l *LoadReports) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("load reports: interval %v: want > 0", interval)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if err := l.Record(now); err != nil {
				return err
			}
		}
	}
}

// Sample returns the increase of q's totals ending at the newest snapshot: over q.Window, or since q.Since when
// set. Without q.Revision every revision of the track counts. Sample.Window is the span covered, shorter than
// asked while the history is shorter. It returns an error wrapping ErrNoData before two snapshots exist or when no
// snapshot in the span holds q's keys. Load reports carry no latency.
func (l *LoadReports) Sample(_ context.Context, q Query) (Sample, error) {
	if err := q.Validate(); err != nil {
		return Sample{}, fmt.Errorf("load reports: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.snaps) < 2 {
		return Sample{}, fmt.Errorf("load reports for %v: %w: fewer than two snapshots recorded yet", q, ErrNoData)
	}
	var (
		out  Sample
		seen bool
		err  error
	)
	if q.Since.IsZero() {
		out, seen = l.window(q)
	} else {
		out, seen = l.since(q)
	}
	switch {
	case !seen:
		err = fmt.Errorf("load reports for %v: %w: no reports for this track", q, ErrNoData)
	case out.Errors > out.Requests:
		err = fmt.Errorf("load reports for %v: %d errors exceed %d requests: the totals are inconsistent", q, out.Errors, out.Requests)
	}
	if err != nil {
		return Sample{}, err
	}
	return out, nil
}

// window sums, over q's keys, the increase across the trailing q.Window; l.mu is held.
func (l *LoadReports) window(q Query) (Sample, bool) {
	per, span := l.windowByKey(q)
	return sum(per, span), len(per) > 0
}

// windowByKey returns, per key of q, the increase across the trailing q.Window, and the span covered; l.mu is
// held.
func (l *LoadReports) windowByKey(q Query) (map[Key]Totals, time.Duration) {
	newest := l.snaps[len(l.snaps)-1]
	from := newest.at.Add(-q.Window)
	// base is the newest snapshot at or before the window's start, or the oldest one.
	base := sort.Search(len(l.snaps), func(i int) bool { return l.snaps[i].at.After(from) }) - 1
	base = max(base, 0)
	out := map[Key]Totals{}
	for id, key := range l.index.keys {
		if !key.matches(q) {
			continue
		}
		var inc Totals
		prev, prevOK := l.snaps[base].get(id)
		seen := prevOK
		for _, s := range l.snaps[base+1:] {
			cur, ok := s.get(id)
			if !ok {
				continue
			}
			seen = true
			if !prevOK || cur.Requests < prev.Requests || cur.Errors < prev.Errors {
				// First appearance in the window, or a reset: the whole current value is new.
				prev = Totals{}
			}
			inc.Requests += cur.Requests - prev.Requests
			inc.Errors += cur.Errors - prev.Errors
			prev, prevOK = cur, true
		}
		if seen {
			out[key] = inc
		}
	}
	return out, newest.at.Sub(l.snaps[base].at)
}

// since sums, over q's keys in the newest snapshot, the increase since q.Since; l.mu is held.
func (l *LoadReports) since(q Query) (Sample, bool) {
	per, span := l.sinceByKey(q)
	return sum(per, span), len(per) > 0
}

// sinceByKey returns, per key of q in the newest snapshot, the increase since q.Since, and the span covered;
// l.mu is held.
func (l *LoadReports) sinceByKey(q Query) (map[Key]Totals, time.Duration) {
	newest := l.snaps[len(l.snaps)-1]
	span := newest.at.Sub(q.Since)
	out := map[Key]Totals{}
	for id, key := range l.index.keys {
		cur, ok := newest.get(id)
		if !ok || !key.matches(q) {
			continue
		}
		b := l.baseOf(id, key, q.Since, newest.at)
		if !b.exact {
			span = min(span, newest.at.Sub(b.at))
		}
		if cur.Requests < b.totals.Requests || cur.Errors < b.totals.Errors {
			b.totals = Totals{} // the producer restarted: all it counted since is new
		}
		out[key] = Totals{Requests: cur.Requests - b.totals.Requests, Errors: cur.Errors - b.totals.Errors}
	}
	return out, span
}

// sum adds up per-key increases into a Sample covering span.
func sum(per map[Key]Totals, span time.Duration) Sample {
	out := Sample{Window: span}
	for _, t := range per {
		out.Requests += t.Requests
		out.Errors += t.Errors
	}
	return out
}

// baseOf returns key's totals at since, captured the first time it is asked while the history covers since.
// Keys are never dropped from the totals, so a key absent from the oldest snapshot had no counts before it; this
// is what keeps a canary revision's counts exact after the history moved past its start (or on a replica that
// started after it). l.mu is held.
func (l *LoadReports) baseOf(id int, key Key, since, now time.Time) base {
	bk := baseKey{key: key, since: since}
	if b, ok := l.bases[bk]; ok {
		b.lastUsed = now
		l.bases[bk] = b
		return b
	}
	var b base
	if i := sort.Search(len(l.snaps), func(i int) bool { return l.snaps[i].at.After(since) }) - 1; i >= 0 {
		t, _ := l.snaps[i].get(id)
		b = base{totals: t, at: since, exact: true}
	} else if t, had := l.snaps[0].get(id); had {
		b = base{totals: t, at: l.snaps[0].at}
	} else {
		b = base{at: since, exact: true}
	}
	b.lastUsed = now
	l.bases[bk] = b
	return b
}
