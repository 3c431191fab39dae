package metrics

import (
	"context"
	"fmt"
	"sort"

	"github.com/sluice-dev/sluice/rollout/analysis"
)

// OriginSource is a Source that can also tell a sample apart by who reported it, so that the analysis can keep
// what may only hold or roll back a canary (legacy load, one identity's excess) out of the promotion evidence.
type OriginSource interface {
	Source
	// Origins returns what each origin contributed to the sample of q, in a stable order (most requests
	// first). The counts sum to what Sample returns for q.
	Origins(ctx context.Context, q Query) ([]analysis.OriginSample, error)
}

var _ OriginSource = (*LoadReports)(nil)

// Origins returns q's sample per origin (see OriginSource): since q.Since when set, else over q.Window. It
// returns an error wrapping ErrNoData when Sample would.
func (l *LoadReports) Origins(_ context.Context, q Query) ([]analysis.OriginSample, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("load reports: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.snaps) < 2 {
		return nil, fmt.Errorf("load reports for %v: %w: fewer than two snapshots recorded yet", q, ErrNoData)
	}
	var per map[Key]Totals
	if q.Since.IsZero() {
		per, _ = l.windowByKey(q)
	} else {
		per, _ = l.sinceByKey(q)
	}
	if len(per) == 0 {
		return nil, fmt.Errorf("load reports for %v: %w: no reports for this track", q, ErrNoData)
	}
	type origin struct {
		identity string
		legacy   bool
	}
	by := map[origin]*analysis.OriginSample{}
	for k, t := range per {
		o := origin{k.Origin, k.Legacy}
		s := by[o]
		if s == nil {
			s = &analysis.OriginSample{Identity: k.Origin, Legacy: k.Legacy}
			by[o] = s
		}
		s.Requests += t.Requests
		s.Errors += t.Errors
	}
	out := make([]analysis.OriginSample, 0, len(by))
	for _, s := range by {
		if s.Errors > s.Requests {
			return nil, fmt.Errorf("load reports for %v from %q: %d errors exceed %d requests: the totals are inconsistent", q, s.Identity, s.Errors, s.Requests)
		}
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Requests != b.Requests {
			return a.Requests > b.Requests
		}
		if a.Identity != b.Identity {
			return a.Identity < b.Identity
		}
		return !a.Legacy && b.Legacy
	})
	return out, nil
}
