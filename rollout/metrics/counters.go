package metrics

import (
	"context"
	"fmt"
)

// Counter is one source's grow-only counter for a track: its value when the span began and its newest reading.
// Now - Base is what the source counted over the span.
type Counter struct {
	// Base is the counter at the span's start, as this history knows it (see LoadReports.Sample).
	Base Totals
	// Now is the counter's newest reading.
	Now Totals
}

// CounterSource is a Source whose cumulative samples are sums of grow-only counters, one per source of counts
// (a controller incarnation). Readings of one counter merge by taking the larger, which is what lets the caller
// persist them and resume after a restart without counting a request twice.
type CounterSource interface {
	Source
	// Counters returns, per source, q's counter since q.Since (which must be set), summed over q's keys. The
	// sum of Now - Base over the sources is what Sample returns for q.
	Counters(ctx context.Context, q Query) (map[string]Counter, error)
}

var _ CounterSource = (*LoadReports)(nil)

// Counters returns q's counters per source (see CounterSource). It returns an error wrapping ErrNoData when
// Sample would.
func (l *LoadReports) Counters(_ context.Context, q Query) (map[string]Counter, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("load reports: %w", err)
	}
	if q.Since.IsZero() {
		return nil, fmt.Errorf("load reports for %v: counters need the span's start (Since)", q)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.snaps) < 2 {
		return nil, fmt.Errorf("load reports for %v: %w: fewer than two snapshots recorded yet", q, ErrNoData)
	}
	newest := l.snaps[len(l.snaps)-1]
	out := map[string]Counter{}
	for id, key := range l.index.keys {
		cur, ok := newest.get(id)
		if !ok || !key.matches(q) {
			continue
		}
		b := l.baseOf(id, key, q.Since, newest.at).totals
		if cur.Requests < b.Requests || cur.Errors < b.Errors {
			b = Totals{} // the producer restarted: all it counted since is new
		}
		c := out[key.Source]
		c.Base = Totals{Requests: c.Base.Requests + b.Requests, Errors: c.Base.Errors + b.Errors}
		c.Now = Totals{Requests: c.Now.Requests + cur.Requests, Errors: c.Now.Errors + cur.Errors}
		out[key.Source] = c
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load reports for %v: %w: no reports for this track", q, ErrNoData)
	}
	return out, nil
}
