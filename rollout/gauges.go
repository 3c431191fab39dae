package rollout

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// phases are every Rollout phase, for the phase gauge's one-hot encoding.
var phases = []v1alpha1.RolloutPhase{
	v1alpha1.PhaseIdle, v1alpha1.PhaseProgressing, v1alpha1.PhasePaused,
	v1alpha1.PhasePromoting, v1alpha1.PhaseSucceeded, v1alpha1.PhaseRolledBack,
}

// gauges are the rollout metrics.
type gauges struct {
	phase  *prometheus.GaugeVec
	weight *prometheus.GaugeVec
}

func newGauges(reg prometheus.Registerer) (*gauges, error) {
	g := &gauges{
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_phase",
			Help: "1 for the phase each service's rollout is in, 0 for the other phases.",
		}, []string{"namespace", "service", "phase"}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_rollout_weight",
			Help: "Share of each service's traffic sent to its canary, as a ratio (0 to 1).",
		}, []string{"namespace", "service"}),
	}
	for _, c := range []prometheus.Collector{g.phase, g.weight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register rollout metrics: %w", err)
		}
	}
	return g, nil
}

func (g *gauges) set(namespace, service string, st v1alpha1.RolloutStatus) {
	for _, p := range phases {
		v := 0.0
		if p == st.Phase {
			v = 1
		}
		g.phase.WithLabelValues(namespace, service, string(p)).Set(v)
	}
	g.weight.WithLabelValues(namespace, service).Set(ratio(st.CurrentWeight))
}

func (g *gauges) forget(namespace, service string) {
	g.phase.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "service": service})
	g.weight.DeleteLabelValues(namespace, service)
}

// reset drops every series: the replica no longer drives rollouts.
func (g *gauges) reset() {
	g.phase.Reset()
	g.weight.Reset()
}
