package main

import (
	"github.com/sluice-dev/sluice/rollout/metrics"
	"github.com/sluice-dev/sluice/xds/lrs"
)

// loadTotals reads the aggregator's fleet-wide totals as the analysis'
// load-report source wants them: per key and reporting origin, so that it
// can keep legacy load and one identity's excess out of the promotion
// evidence.
func loadTotals(agg *lrs.Aggregator) func() map[metrics.Key]metrics.Totals {
	return func() map[metrics.Key]metrics.Totals {
		all := agg.Origins()
		out := make(map[metrics.Key]metrics.Totals, len(all))
		for k, origins := range all {
			for o, t := range origins {
				key := metrics.Key{Namespace: k.Namespace, Service: k.Service, Track: k.Track, Revision: k.Revision,
					Origin: o.Identity, Legacy: o.Class == lrs.ClassLegacy}
				out[key] = metrics.Totals{Requests: t.Requests, Errors: t.Errors}
			}
		}
		return out
	}
}
