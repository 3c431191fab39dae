package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
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

// TrafficReport is what the traffic side says about a service besides
// confirmations: why it does not publish the routes its objects ask for, and
// which proxies reject what it published.
type TrafficReport struct {
	// Problems are what the traffic controller could not publish as the
	// cluster objects ask, each "<object>: <what is wrong and what was done
	// instead>", sorted.
	Problems []string
	// Nacks are the proxies' rejections in force, "<node>: <detail>", sorted.
	Nacks []string
}

// TrafficReporter reports on a service's traffic; the traffic controller
// implements it (Problems and Nacks). TrafficReporterFunc adapts a function.
type TrafficReporter interface {
	Report(namespace, service string) TrafficReport
}

// TrafficReporterFunc adapts a function to TrafficReporter.
type TrafficReporterFunc func(namespace, service string) TrafficReport

// Report calls f.
func (f TrafficReporterFunc) Report(namespace, service string) TrafficReport {
	return f(namespace, service)
}

var _ TrafficReporter = TrafficReporterFunc(nil)

// PolicySource gives the compiled DeploymentPolicies, the same that
// admission applies (the webhooks' store implements it), so that the
// controller resolves a delivery exactly as admission did.
type PolicySource interface {
	Policies() ([]*policies.Compiled, error)
}

// PolicySourceFunc adapts a function to PolicySource.
type PolicySourceFunc func() ([]*policies.Compiled, error)

// Policies calls f.
func (f PolicySourceFunc) Policies() ([]*policies.Compiled, error) { return f() }

var _ PolicySource = PolicySourceFunc(nil)

// CustomSource runs a team's custom analysis queries; *metrics.Prometheus
// implements it.
type CustomSource interface {
	Custom(ctx context.Context, c metrics.CustomQuery, q metrics.Query) analysis.CustomSample
}

// Options configure the rollout controller.
type Options struct {
	// Traffic confirms weights with the proxies. Required.
	Traffic Traffic
	// Reports says what the traffic side cannot publish for a service and
	// which proxies reject it; the Rollout's TrafficReady condition and
	// message show it. Required.
	Reports TrafficReporter
	// Policies gives the DeploymentPolicies whose rollout defaults a
	// delivery takes. Required.
	Policies PolicySource
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
	cache    cache.Cache
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
	if opts.Reports == nil {
		return nil, errors.New("rollout controller: Options.Reports is required (the traffic controller's problems and NACKs)")
	}
	if opts.Policies == nil {
		return nil, errors.New("rollout controller: Options.Policies is required (the admission webhooks' policy store)")
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
		cache:  mgr.GetCache(),
		events: mgr.GetEventRecorder("sluice-rollout"),
		opts:   opts,
		gauges: g,
	}
	// The controller is built anew at each start: it runs on the leader
	// only, and a replica that loses the lease and wins it back starts it
	// again (controller-runtime controllers start only once).
	if err := mgr.Add(c); err != nil {
		return nil, fmt.Errorf("rollout controller: %w", err)
	}
	return c, nil
}

// NeedLeaderElection is true: only the leader drives rollouts.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start drives rollouts until ctx ends (the leader's term). When it returns,
// the rollout gauges are cleared: a replica that no longer leads exports no
// phases or weights it stopped keeping up to date.
func (c *Controller) Start(ctx context.Context) error {
	defer c.gauges.reset()
	ctl, err := controller.NewUnmanaged("rollout", controller.Options{
		MaxConcurrentReconciles: c.opts.MaxConcurrentReconciles,
		Reconciler:              reconcile.Func(c.Reconcile),
		SkipNameValidation:      ptr.To(true),
		Logger:                  logr.FromContextOrDiscard(ctx),
	})
	if err != nil {
		return fmt.Errorf("rollout controller: %w", err)
	}
	for _, src := range []source.Source{
		source.Kind(c.cache, client.Object(&appsv1.Deployment{}), handler.EnqueueRequestsFromMapFunc(deploymentKey)),
		source.Kind(c.cache, client.Object(&v1alpha1.Rollout{}), handler.EnqueueRequestsFromMapFunc(sameName)),
	} {
		if err := ctl.Watch(src); err != nil {
			return fmt.Errorf("rollout controller: %w", err)
		}
	}
	return ctl.Start(ctx)
}

// sameName maps a Rollout to its Deployment.
func sameName(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}}}
}

// deploymentKey maps a canary Deployment to its team's Deployment, and any
// other Deployment to itself.
func deploymentKey(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetName()
	if stable, ok := v1alpha1.CanaryOwner(o); ok {
		name = stable
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

var _ CustomSource = (*metrics.Prometheus)(nil)
