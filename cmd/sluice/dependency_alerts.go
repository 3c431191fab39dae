package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/notify"
	"github.com/sluice-dev/sluice/xds/lrs/callers"
)

// Dependency alerts judge each caller's load on the services and external
// dependencies it calls, per window, with an anytime-valid test.
const (
	dependencyAlertWindow = time.Hour
	dependencyAlertAlpha  = 0.01
	// MetricDependencyFailing is 1 while a namespace's calls to a service
	// or external dependency are failing by the verdict, 0 otherwise.
	MetricDependencyFailing = "sluice_dependency_failing"
)

// dependencyAlerts turns the callers' figures into alerts: a notification
// to the calling namespace's receiver on each change, and a gauge per
// (caller namespace, dependency) for the PrometheusRule.
type dependencyAlerts struct {
	watch    *notify.DependencyWatch
	notifier *notify.Notifier
	failing  *prometheus.GaugeVec
}

func newDependencyAlerts(notifier *notify.Notifier, reg prometheus.Registerer) (*dependencyAlerts, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricDependencyFailing,
		Help: "1 while the calls of a namespace to a service or external dependency fail above its error-rate ceiling by an anytime-valid test of their load reports (per window), 0 otherwise. Callers are capped per service.",
	}, []string{"namespace", "dependency", "kind"})
	if err := reg.Register(g); err != nil {
		return nil, err
	}
	return &dependencyAlerts{watch: notify.NewDependencyWatch(dependencyAlertWindow, dependencyAlertAlpha), notifier: notifier, failing: g}, nil
}

// restart forgets the previous term's windows (counts restart too).
func (a *dependencyAlerts) restart() {
	a.watch = notify.NewDependencyWatch(dependencyAlertWindow, dependencyAlertAlpha)
	a.failing.Reset()
}

// observe judges the samples, sends what changed and sets the gauges.
func (a *dependencyAlerts) observe(ctx context.Context, samples []notify.DependencySample, now time.Time) {
	for _, m := range a.watch.Observe(samples, now) {
		a.notifier.Notify(ctx, m)
	}
	a.failing.Reset()
	for _, s := range samples {
		kind := "service"
		if s.External {
			kind = "external"
		}
		v := 0.0
		if a.watch.Failing(s.Dependency) {
			v = 1
		}
		a.failing.WithLabelValues(s.Caller, s.Target(), kind).Set(v)
	}
}

// serviceSamples are the callers of a Rollout's service, judged against its
// max error rate. Folded and unidentified callers have no receiver.
func serviceSamples(ro *v1alpha1.Rollout, svc callers.Service, loads map[string]callers.Load) []notify.DependencySample {
	limit := ro.Spec.Delivery.MaxErrorRate
	if limit == nil {
		limit = v1alpha1.DefaultDelivery().MaxErrorRate
	}
	var out []notify.DependencySample
	for ns, l := range loads {
		if ns == v1alpha1.CallersOther || ns == v1alpha1.CallersUnidentified {
			continue
		}
		out = append(out, notify.DependencySample{
			Dependency: notify.Dependency{Namespace: svc.Namespace, Name: svc.Name, Caller: ns},
			Requests:   l.Requests, Errors: l.Errors, Limit: float64(*limit) / float64(v1alpha1.TotalBasisPoints)})
	}
	return out
}

// externalSamples are the callers of each external dependency, judged
// against its Service's sluice.dev/max-error-rate (default: the built-in
// delivery's).
func externalSamples(ctx context.Context, c client.Reader, loads map[callers.Service]map[string]callers.Load) ([]notify.DependencySample, error) {
	if len(loads) == 0 {
		return nil, nil
	}
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs); err != nil {
		return nil, err
	}
	limits := map[callers.Service]float64{}
	for _, s := range svcs.Items {
		if v, ok := s.Annotations[v1alpha1.AnnotationMaxErrorRate]; ok {
			if bp, err := v1alpha1.ParseRate(v); err == nil && bp > 0 {
				limits[callers.Service{Namespace: s.Namespace, Name: s.Name}] = float64(bp) / float64(v1alpha1.TotalBasisPoints)
			}
		}
	}
	def := float64(*v1alpha1.DefaultDelivery().MaxErrorRate) / float64(v1alpha1.TotalBasisPoints)
	var out []notify.DependencySample
	for svc, m := range loads {
		limit, ok := limits[svc]
		if !ok {
			limit = def
		}
		for ns, l := range m {
			if ns == v1alpha1.CallersOther || ns == v1alpha1.CallersUnidentified {
				continue
			}
			out = append(out, notify.DependencySample{
				Dependency: notify.Dependency{Namespace: svc.Namespace, Name: svc.Name, External: true, Caller: ns},
				Requests:   l.Requests, Errors: l.Errors, Limit: limit})
		}
	}
	return out, nil
}
