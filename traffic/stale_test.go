package traffic

import (
	"testing"
	"time"
)

// TestStaleProxiesSayWhereAndSinceWhen: a stale proxy is named with the
// replica it is connected to and, when it went silent, since when; entries
// that are no proxy (an unreachable replica) stay as they are.
func TestStaleProxiesSayWhereAndSinceWhen(t *testing.T) {
	since := time.Date(2026, 12, 3, 21, 50, 3, 0, time.FixedZone("CET", 3600))
	for name, tc := range map[string]struct {
		where staleWhere
		id    string
		want  string
	}{
		"silent":              {staleWhere{replica: "sluice-1", since: since}, "hung-proxy", "hung-proxy on sluice-1, silent since 2026-12-03T20:50:03Z"},
		"old consumer reject": {staleWhere{replica: "sluice-0"}, "frontend-proxy", "frontend-proxy on sluice-0"},
		"unreachable replica": {staleWhere{}, "replica 10.0.0.7:18001", "replica 10.0.0.7:18001"},
	} {
		if got := tc.where.describe(tc.id); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
