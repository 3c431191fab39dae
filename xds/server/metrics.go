package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the xDS serving metrics named in the design.
type metrics struct {
	connected  prometheus.Gauge
	pushes     *prometheus.CounterVec
	nacks      *prometheus.CounterVec
	ackLatency *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_xds_connected_proxies",
			Help: "xDS streams (state-of-the-world and delta) currently open.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_pushes_total",
			Help: "xDS responses sent to proxies, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_nacks_total",
			Help: "xDS responses rejected by proxies, by resource type.",
		}, []string{"type"}),
		ackLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_xds_push_ack_seconds",
			Help:    "Time from sending an xDS response to the proxy's ACK, by resource type.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"type"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connected, m.pushes, m.nacks, m.ackLatency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register xDS metrics: %w", err)
		}
	}
	return m, nil
}
