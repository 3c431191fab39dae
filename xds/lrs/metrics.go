package lrs

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the per-route series fed by this replica's own load reports.
// They are local on purpose: Prometheus sums replicas itself, so exporting
// merged totals would double count.
type metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
	unknown  prometheus.Counter
	rejected *prometheus.CounterVec
	held     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	labels := []string{"namespace", "service", "track"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_route_requests_total",
			Help: "Completed requests reported by xDS clients over LRS, per service track.",
		}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_route_errors_total",
			Help: "Completed requests with a non-OK outcome reported by xDS clients over LRS, per service track.",
		}, labels),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_route_in_flight",
			Help: "Requests in progress at the last load report, per service track.",
		}, labels),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_lrs_unattributed_requests_total",
			Help: "Completed requests reported for clusters or localities that Sluice does not publish (now).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_lrs_rejected_reports_total",
			Help: "Locality entries of load reports dropped, by reason.",
		}, []string{"reason"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_lrs_held_entries",
			Help: "Locality entries of load reports held, uncounted, while the other replicas are asked whether their reporter acknowledged the cluster.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.inFlight, m.unknown, m.rejected, m.held} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register load reporting metrics: %w", err)
		}
	}
	return m, nil
}
