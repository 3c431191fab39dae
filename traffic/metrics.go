package traffic

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the traffic controller's own metrics; the xDS server exports
// connected proxies, pushes, NACKs and push-to-ACK latency.
type metrics struct {
	publishes    *prometheus.CounterVec
	buildSeconds prometheus.Histogram
	services     prometheus.Gauge
	problems     prometheus.Gauge
	confirms     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_traffic_publishes_total",
			Help: "Route plan publications by result: published, unchanged (same content) or failed.",
		}, []string{"result"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_traffic_build_seconds",
			Help:    "Time to list the cluster objects, build the route plan and translate it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_traffic_services",
			Help: "Services in the published route plan.",
		}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_traffic_object_problems",
			Help: "Problems found in cluster objects at the last publication (pods left out, ports skipped, strategies ignored).",
		}),
		confirms: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_traffic_confirm_seconds",
			Help:    "Time Confirm took, by result: acked, nacked or failed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.publishes, m.buildSeconds, m.services, m.problems, m.confirms} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register traffic metrics: %w", err)
		}
	}
	return m, nil
}
