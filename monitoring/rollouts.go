// Package monitoring exports what Rollout statuses say as Prometheus
// metrics, so that alerts and dashboards rest on Sluice's own verdicts and
// phases (a step the proxies have not confirmed, a NACK, a stale proxy, an
// analysis that failed) rather than on raw rates crossing a line.
package monitoring

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Metric names exported by RolloutCollector.
const (
	MetricProxies          = "sluice_rollout_proxies"
	MetricStepConfirmed    = "sluice_rollout_step_confirmed"
	MetricCanaryStarted    = "sluice_rollout_canary_started_timestamp_seconds"
	MetricAnalysisVerdict  = "sluice_rollout_analysis_verdict"
	MetricAnalysisFailures = "sluice_rollout_analysis_failures"
	proxyStateAcked        = "acked"
	proxyStateNacked       = "nacked"
	proxyStateStale        = "stale"
	collectTimeout         = 5 * time.Second
)

// RolloutCollector reads every Rollout at scrape time and reports, per
// service: its proxies by state, whether the current step's weight is
// confirmed, when its canary started, the newest verdict on each analysed
// metric and the failing analyses in a row. It reports only while this
// replica leads (the one that writes the statuses), so replicas never export
// the same series twice.
type RolloutCollector struct {
	reader  client.Reader
	leading func() bool
	log     logr.Logger

	proxies, confirmed, started, verdict, failures *prometheus.Desc
}

var _ prometheus.Collector = (*RolloutCollector)(nil)

// NewRolloutCollector reads Rollouts through reader while leading reports
// true.
func NewRolloutCollector(reader client.Reader, leading func() bool, log logr.Logger) *RolloutCollector {
	svc := []string{"namespace", "service"}
	return &RolloutCollector{
		reader: reader, leading: leading, log: log,
		proxies: prometheus.NewDesc(MetricProxies,
			"Proxies serving each service's routes, by state: acked (carry the current routes), nacked (rejected them) or stale (left them unanswered past the stale bound).",
			append(svc, "state"), nil),
		confirmed: prometheus.NewDesc(MetricStepConfirmed,
			"1 when every proxy confirmed the current step's weight of a progressing or paused rollout, 0 while the step waits for them.",
			svc, nil),
		started: prometheus.NewDesc(MetricCanaryStarted,
			"When delivery of each service's current canary revision began, as Unix seconds; absent without a canary.",
			svc, nil),
		verdict: prometheus.NewDesc(MetricAnalysisVerdict,
			"1 for the newest analysis verdict (Pass, Fail or Inconclusive) on each metric of each service's current rollout.",
			append(svc, "metric", "verdict"), nil),
		failures: prometheus.NewDesc(MetricAnalysisFailures,
			"Analyses in a row in which a check failed, per service.",
			svc, nil),
	}
}

// Describe sends the descriptions of every metric.
func (c *RolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.proxies, c.confirmed, c.started, c.verdict, c.failures} {
		ch <- d
	}
}

// Collect sends the metrics of every Rollout, or nothing while this replica
// does not lead. A failed list is logged and sends nothing: a scrape never
// shows made-up values.
func (c *RolloutCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.leading() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	var list v1alpha1.RolloutList
	if err := c.reader.List(ctx, &list); err != nil {
		c.log.Error(err, "list rollouts for metrics")
		return
	}
	// Series are keyed by namespace and service, and two Rollouts may name
	// one service (two Deployments with the same sluice.dev/service: one
	// steers it, the other's TrafficReady says why it cannot). A series
	// sent twice fails the whole scrape, so each service is exported once:
	// from its active Rollout if one is, else the first by name.
	chosen := map[[2]string]*v1alpha1.Rollout{}
	var order [][2]string
	for i := range list.Items {
		ro := &list.Items[i]
		k := [2]string{ro.Namespace, serviceOf(ro)}
		prev, ok := chosen[k]
		switch {
		case !ok:
			order = append(order, k)
			chosen[k] = ro
		case !prev.Status.Phase.Active() && ro.Status.Phase.Active(),
			prev.Status.Phase.Active() == ro.Status.Phase.Active() && ro.Name < prev.Name:
			chosen[k] = ro
		}
	}
	for _, k := range order {
		c.collect(ch, chosen[k])
	}
}

// serviceOf is the service a Rollout delivers: spec.delivery.service, or
// the Rollout's name.
func serviceOf(ro *v1alpha1.Rollout) string {
	if ro.Spec.Delivery.Service != "" {
		return ro.Spec.Delivery.Service
	}
	return ro.Name
}

func (c *RolloutCollector) collect(ch chan<- prometheus.Metric, ro *v1alpha1.Rollout) {
	ns, svc := ro.Namespace, serviceOf(ro)
	st := ro.Status
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{ns, svc}, labels...)...)
	}
	gauge(c.proxies, float64(st.Proxies.Acked), proxyStateAcked)
	gauge(c.proxies, float64(st.Proxies.Nacked), proxyStateNacked)
	gauge(c.proxies, float64(st.Proxies.Stale), proxyStateStale)
	gauge(c.failures, float64(st.AnalysisFailures))
	if st.Phase != v1alpha1.PhaseProgressing && st.Phase != v1alpha1.PhasePaused {
		return
	}
	confirmed := 0.0
	if st.StepStartedAt != nil {
		confirmed = 1
	}
	gauge(c.confirmed, confirmed)
	if st.CanaryStartedAt != nil {
		gauge(c.started, float64(st.CanaryStartedAt.Unix()))
	}
	// The newest decision per metric on this canary; status.analysis is
	// oldest first and may still hold a replaced revision's decisions.
	newest := map[string]v1alpha1.Verdict{}
	for _, d := range st.Analysis {
		if st.CanaryStartedAt != nil && d.Time.Before(st.CanaryStartedAt) {
			continue
		}
		newest[d.Metric] = d.Verdict
	}
	for metric, v := range newest {
		gauge(c.verdict, 1, metric, string(v))
	}
}
