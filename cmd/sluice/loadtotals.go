package main

import (
	"github.com/sluice-dev/sluice/rollout/metrics"
	"github.com/sluice-dev/sluice/xds/lrs"
)

// loadTotals reads the aggregator's fleet-wide totals as the analysis'
// load-report source wants them: per key, reporting origin and replica
// incarnation (local names this process), so that it can keep legacy load
// and one identity's excess out of the promotion evidence, and persist each
// incarnation's grow-only counters across restarts.
func loadTotals(agg *lrs.Aggregator, local string) func() map[metrics.Key]metrics.Totals {
	return func() map[metrics.Key]metrics.Totals {
		out := map[metrics.Key]metrics.Totals{}
		for source, keys := range agg.BySource(local) {
			for k, origins := range keys {
				for o, t := range origins {
					key := metrics.Key{Namespace: k.Namespace, Service: k.Service, Track: k.Track, Revision: k.Revision,
						Origin: o.Identity, Legacy: o.Class == lrs.ClassLegacy, Source: source}
					out[key] = metrics.Totals{Requests: t.Requests, Errors: t.Errors}
				}
			}
		}
		return out
	}
}
