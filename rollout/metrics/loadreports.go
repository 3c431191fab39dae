package metrics

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Key names one revision of one track of one service in the load-report totals.
type Key struct {
	Namespace, Service, Track string
	// Revision is the pod template revision that served the requests; empty when the reports did not say.
	Revision string
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

// snapshot is the totals of every key at one instant.
type snapshot struct {
	at     time.Time
	totals map[Key]Totals
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
	copied := make(map[Key]Totals, len(current))
	for k, v := range current {
		copied[k] = v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.snaps); n > 0 && !now.After(l.snaps[n-1].at) {
		return fmt.Errorf("load reports: snapshot at %v is not after the newest at %v", now, l.snaps[n-1].at)
	}
	l.snaps = append(l.snaps, snapshot{at: now, totals: copied})
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
	newest := l.snaps[len(l.snaps)-1]
	from := newest.at.Add(-q.Window)
	// base is the newest snapshot at or before the window's start, or the oldest one.
	base := sort.Search(len(l.snaps), func(i int) bool { return l.snaps[i].at.After(from) }) - 1
	base = max(base, 0)
	keys := map[Key]bool{}
	for _, s := range l.snaps[base:] {
		for k := range s.totals {
			if k.matches(q) {
				keys[k] = true
			}
		}
	}
	var out Sample
	for key := range keys {
		prev, prevOK := l.snaps[base].totals[key]
		for _, s := range l.snaps[base+1:] {
			cur, ok := s.totals[key]
			if !ok {
				continue
			}
			if !prevOK || cur.Requests < prev.Requests || cur.Errors < prev.Errors {
				// First appearance in the window, or a reset: the whole current value is new.
				prev = Totals{}
			}
			out.Requests += cur.Requests - prev.Requests
			out.Errors += cur.Errors - prev.Errors
			prev, prevOK = cur, true
		}
	}
	out.Window = newest.at.Sub(l.snaps[base].at)
	return out, len(keys) > 0
}

// since sums, over q's keys in the newest snapshot, the increase since q.Since; l.mu is held.
func (l *LoadReports) since(q Query) (Sample, bool) {
	newest := l.snaps[len(l.snaps)-1]
	out := Sample{Window: newest.at.Sub(q.Since)}
	seen := false
	for key, cur := range newest.totals {
		if !key.matches(q) {
			continue
		}
		seen = true
		b := l.baseOf(key, q.Since, newest.at)
		if !b.exact {
			out.Window = min(out.Window, newest.at.Sub(b.at))
		}
		if cur.Requests < b.totals.Requests || cur.Errors < b.totals.Errors {
			b.totals = Totals{} // the producer restarted: all it counted since is new
		}
		out.Requests += cur.Requests - b.totals.Requests
		out.Errors += cur.Errors - b.totals.Errors
	}
	return out, seen
}

// baseOf returns key's totals at since, captured the first time it is asked while the history covers since.
// Keys are never dropped from the totals, so a key absent from the oldest snapshot had no counts before it; this
// is what keeps a canary revision's counts exact after the history moved past its start (or on a replica that
// started after it). l.mu is held.
func (l *LoadReports) baseOf(key Key, since, now time.Time) base {
	bk := baseKey{key: key, since: since}
	if b, ok := l.bases[bk]; ok {
		b.lastUsed = now
		l.bases[bk] = b
		return b
	}
	var b base
	if i := sort.Search(len(l.snaps), func(i int) bool { return l.snaps[i].at.After(since) }) - 1; i >= 0 {
		b = base{totals: l.snaps[i].totals[key], at: since, exact: true}
	} else if t, had := l.snaps[0].totals[key]; had {
		b = base{totals: t, at: l.snaps[0].at}
	} else {
		b = base{at: since, exact: true}
	}
	b.lastUsed = now
	l.bases[bk] = b
	return b
}
