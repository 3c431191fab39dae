package metrics

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Key names one track of one service in the load-report totals.
type Key struct {
	Namespace, Service, Track string
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
	return &LoadReports{totals: totals, retention: retention}, nil
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

// Sample returns the increase of q's totals over q.Window ending at the newest snapshot. Sample.Window is the
// span covered, shorter than asked while the history is shorter. It returns an error wrapping ErrNoData before
// two snapshots exist or when no snapshot in the window holds q's key. Load reports carry no latency.
func (l *LoadReports) Sample(_ context.Context, q Query) (Sample, error) {
	if err := q.Validate(); err != nil {
		return Sample{}, fmt.Errorf("load reports: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.snaps) < 2 {
		return Sample{}, fmt.Errorf("load reports for %v: %w: fewer than two snapshots recorded yet", q, ErrNoData)
	}
	newest := l.snaps[len(l.snaps)-1]
	from := newest.at.Add(-q.Window)
	// base is the newest snapshot at or before the window's start, or the oldest one.
	base := sort.Search(len(l.snaps), func(i int) bool { return l.snaps[i].at.After(from) }) - 1
	base = max(base, 0)
	key := Key{Namespace: q.Namespace, Service: q.Service, Track: q.Track}
	var out Sample
	prev, prevOK := l.snaps[base].totals[key]
	seen := prevOK
	for _, s := range l.snaps[base+1:] {
		cur, ok := s.totals[key]
		if !ok {
			continue
		}
		seen = true
		if !prevOK || cur.Requests < prev.Requests || cur.Errors < prev.Errors {
			// First appearance in the window, or a reset: the whole current value is new.
			prev = Totals{}
		}
		out.Requests += cur.Requests - prev.Requests
		out.Errors += cur.Errors - prev.Errors
		prev, prevOK = cur, true
	}
	if !seen {
		return Sample{}, fmt.Errorf("load reports for %v: %w: no reports for this track", q, ErrNoData)
	}
	if out.Errors > out.Requests {
		return Sample{}, fmt.Errorf("load reports for %v: %d errors exceed %d requests: the totals are inconsistent", q, out.Errors, out.Requests)
	}
	out.Window = newest.at.Sub(l.snaps[base].at)
	return out, nil
}
