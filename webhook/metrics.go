package webhook

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names exported by the webhooks.
const (
	MetricRequests   = "sluice_admission_requests_total"
	MetricDuration   = "sluice_admission_duration_seconds"
	MetricViolations = "sluice_policy_violations_total"
	MetricBypasses   = "sluice_admission_bypass_total"
)

// Decisions, the values of the decision label of MetricRequests.
const (
	DecisionAllowed = "allowed"
	DecisionPatched = "patched"
	DecisionWarned  = "warned"
	DecisionDenied  = "denied"
	DecisionError   = "error"
)

// metrics are the webhooks' Prometheus collectors.
type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	violations *prometheus.CounterVec
	bypasses   *prometheus.CounterVec
}

// newMetrics registers the collectors with reg, reusing collectors that an
// earlier registration with the same registry created.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests,
			Help: "Admission requests handled by Sluice's webhooks, by operation, kind and decision.",
		}, []string{"operation", "kind", "decision"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricDuration,
			Help: "Time Sluice's webhooks spent on one admission request, from reading the request to writing the answer.",
			// Sub-millisecond resolution: the handlers' own work is far below
			// kube-apiserver's timeout, and its tail is what matters.
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"operation", "kind"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricViolations,
			Help: "DeploymentPolicy violations seen at admission, by policy, rule and mode (dry runs excluded).",
		}, []string{"policy", "rule", "mode"}),
		bypasses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricBypasses,
			Help: "Deployments admitted despite policy violations under an allowed emergency bypass, by policy and namespace.",
		}, []string{"policy", "namespace"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.violations, err = register(reg, m.violations); err != nil {
		return nil, err
	}
	if m.bypasses, err = register(reg, m.bypasses); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register admission metrics: %w", err)
	}
	return c, nil
}
