package callers

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/xds/lrs"
)

// BenchmarkLeaderTick is one write of the leader's callers at 100 services,
// each called by 20 namespaces with 3 identities each, on stable and canary:
// index the aggregator's totals and build every bounded status.
func BenchmarkLeaderTick(b *testing.B) {
	origins := map[lrs.Key]lrs.ByOrigin{}
	for s := range 100 {
		for _, track := range []string{"stable", "canary"} {
			k := lrs.Key{Namespace: fmt.Sprintf("team-%d", s%10), Service: fmt.Sprintf("svc-%d", s), Track: track, Revision: "r" + track}
			m := lrs.ByOrigin{}
			for c := range 20 {
				for i := range 3 {
					m[lrs.Origin{Class: lrs.ClassAuthenticated, Identity: fmt.Sprintf("token:caller-%d/sa-%d", c, i)}] = lrs.Totals{Requests: 1000, Errors: 3}
				}
			}
			origins[k] = m
		}
	}
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		idx := Build(origins)
		for s := range 100 {
			svc := Service{Namespace: fmt.Sprintf("team-%d", s%10), Name: fmt.Sprintf("svc-%d", s)}
			loads := idx.Loads(svc, "rcanary")
			_ = Status(loads, loads, now, now, now.Add(10*time.Second))
		}
	}
}
