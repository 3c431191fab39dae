package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
	"github.com/sluice-dev/sluice/rollout/metrics"
	"github.com/sluice-dev/sluice/router"
)

// Traffic confirms that the proxies carry a canary weight. The traffic
// controller implements it; TrafficFunc adapts a function.
type Traffic interface {
	// Confirm blocks until every proxy subscribed to the service's routes
	// acknowledged routes carrying at least weight (0: all to stable), a
	// proxy rejected them (reported in the Confirmation), or ctx ends.
	Confirm(ctx context.Context, namespace, service string, weight router.Weight) (Confirmation, error)
}

// TrafficFunc adapts a function to Traffic.
type TrafficFunc func(ctx context.Context, namespace, service string, weight router.Weight) (Confirmation, error)

// Confirm calls f.
func (f TrafficFunc) Confirm(ctx context.Context, namespace, service string, weight router.Weight) (Confirmation, error) {
	return f(ctx, namespace, service, weight)
}

var _ Traffic = TrafficFunc(nil)

// CustomSource runs a team's custom analysis queries; *metrics.Prometheus
// implements it.
type CustomSource interface {
	Custom(ctx context.Context, c metrics.CustomQuery, q metrics.Query) analysis.CustomSample
}

// Options configure the rollout controller.
type Options struct {
	// Traffic confirms weights with the proxies. Required.
	Traffic Traffic
	// Samples delivers per-track request and error counts: the load-report
	// source normally, or a Prometheus source. Required.
	Samples metrics.Source
	// Custom runs the custom queries of the teams' rollout defaults; nil
	// reports them as absent (no Prometheus configured).
	Custom CustomSource
	// ConfirmTimeout bounds one wait for proxy acknowledgements; the
	// reconcile tries again after it. Default 2s.
	ConfirmTimeout time.Duration
	// MaxConcurrentReconciles is how many Deployments are reconciled at once.
	// Default 4.
	MaxConcurrentReconciles int
	// Registerer receives the rollout metrics; default controller-runtime's
	// metrics registry.
	Registerer prometheus.Registerer
}

// Controller drives every opted-in Deployment's Rollout. It runs on the
// leader only.
type Controller struct {
	client   client.Client
	events   events.EventRecorder
	opts     Options
	gauges   *gauges
	services sync.Map // types.NamespacedName of a Deployment → its service, to forget its metrics
}

// New validates opts and adds the rollout controller to mgr. The manager's
// scheme must know apps/v1 and sluice.dev/v1alpha1.
func New(mgr manager.Manager, opts Options) (*Controller, error) {
	if opts.Traffic == nil {
		return nil, errors.New("rollout controller: Options.Traffic is required (the traffic controller's Confirm)")
	}
	if opts.Samples == nil {
		return nil, errors.New("rollout controller: Options.Samples is required (a load-report or Prometheus source)")
	}
	if opts.ConfirmTimeout <= 0 {
		opts.ConfirmTimeout = 2 * time.Second
	}
	if opts.MaxConcurrentReconciles <= 0 {
		opts.MaxConcurrentReconciles = 4
	}
	if opts.Registerer == nil {
		opts.Registerer = crmetrics.Registry
	}
	g, err := newGauges(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("rollout controller: %w", err)
	}
	c := &Controller{
		client: mgr.GetClient(),
		events: mgr.GetEventRecorder("sluice-rollout"),
		opts:   opts,
		gauges: g,
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("rollout").
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(deploymentKey)).
		Watches(&v1alpha1.Rollout{}, handler.EnqueueRequestsFromMapFunc(sameName)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(reconcile.Func(c.Reconcile))
	if err != nil {
		return nil, fmt.Errorf("rollout controller: %w", err)
	}
	return c, nil
}

// sameName maps a Rollout to its Deployment.
func sameName(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}}}
}

// deploymentKey maps a canary Deployment to its team's Deployment, and any
// other Deployment to itself.
func deploymentKey(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetName()
	if stable, ok := IsCanary(o); ok {
		name = stable
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

var _ CustomSource = (*metrics.Prometheus)(nil)
