package traffic

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/server"
	"github.com/sluice-dev/sluice/xds/translate"
)

// DefaultDebounce is how long the controller waits after a change before
// publishing, to coalesce bursts (a rolling update touches many pods).
const DefaultDebounce = 20 * time.Millisecond

// DefaultRetry is how long the controller waits before publishing again after
// a failed publication.
const DefaultRetry = time.Second

// Options configure a Controller. The zero value is valid.
type Options struct {
	// Logger receives the controller's logs; zero means the manager's logger.
	Logger logr.Logger
	// Registerer receives the controller's metrics; nil means
	// controller-runtime's metrics.Registry.
	Registerer prometheus.Registerer
	// Debounce coalesces bursts of changes; zero means DefaultDebounce.
	// Changes of a Rollout's phase, weight or spec are published at once.
	Debounce time.Duration
	// Retry is the pause before publishing again after a failure; zero means
	// DefaultRetry.
	Retry time.Duration
	// Translate tunes the generated xDS resources.
	Translate translate.Options
	// Peers returns the other replicas serving xDS; nil means this replica
	// is alone. Confirm then waits for their proxies too.
	Peers func(ctx context.Context) ([]server.Peer, error)
	// PeerGrace is how long Confirm retries a replica it cannot reach before
	// it names the replica as stale and stops waiting for it; zero means
	// DefaultPeerGrace.
	PeerGrace time.Duration
	// Replica names this replica in Confirmation.Replicas; empty means
	// "this replica".
	Replica string
	// CanaryDeletionWait bounds how long a proxy that may still send the
	// canary traffic (see Confirmation.Holding) holds its deletion, from
	// when it rejected the stable routes or disconnected; zero means
	// DefaultCanaryDeletionWait.
	CanaryDeletionWait time.Duration
}

// DefaultPeerGrace is Options.PeerGrace's default.
const DefaultPeerGrace = 10 * time.Second

// DefaultCanaryDeletionWait is Options.CanaryDeletionWait's default.
const DefaultCanaryDeletionWait = 3 * time.Minute

// Controller watches the cluster and publishes the route plan to an xDS
// server. It implements controller-runtime's Runnable and runs on every
// replica.
type Controller struct {
	peers     func(ctx context.Context) ([]server.Peer, error)
	replica   string
	peerGrace time.Duration
	// deletionWait is Options.CanaryDeletionWait.
	deletionWait time.Duration
	// peerDown holds, under mu, since when each unreachable peer (or the
	// peers' resolution, "peers") has been failing, and whether its address
	// refused connections at the last failure.
	peerDown map[string]peerFailure
	// holdingSince remembers, under mu, since when each proxy has held a
	// service's canary (see splitHolders).
	holdingSince map[ServiceKey]map[string]time.Time

	srv      *server.Server
	source   source
	log      logr.Logger
	metrics  *metrics
	debounce time.Duration
	retry    time.Duration
	topts    translate.Options

	wake   chan struct{}
	urgent chan struct{}

	mu        sync.Mutex
	published publication
	// changed is closed and replaced after every publication.
	changed  chan struct{}
	problems []Problem
	lastGood map[ServiceKey]router.Service
}

var (
	_ manager.Runnable               = (*Controller)(nil)
	_ manager.LeaderElectionRunnable = (*Controller)(nil)
)

// source lists the cluster objects and reports changes through the trigger
// given to run; it is the informer shell around the pure core.
type source interface {
	// run starts watching; it returns once the first list is complete.
	run(ctx context.Context, trigger func(urgent bool)) error
	list(ctx context.Context) (Objects, error)
}

// New returns a controller reading the cluster through informers of its own
// (Pods and Deployments labelled sluice.dev/service, Services, Rollouts),
// built from the manager's config and scheme, and adds it to the manager as a
// runnable that does not need leader election. The scheme must hold client-go's
// types and sluice.dev/v1alpha1.
func New(mgr manager.Manager, srv *server.Server, opts Options) (*Controller, error) {
	if srv == nil {
		return nil, errors.New("traffic controller: no xDS server given")
	}
	for _, obj := range []runtime.Object{&corev1.Pod{}, &corev1.Service{}, &appsv1.Deployment{}, &v1alpha1.Rollout{}} {
		if _, _, err := mgr.GetScheme().ObjectKinds(obj); err != nil {
			return nil, fmt.Errorf("traffic controller: the manager's scheme lacks %T (register client-go's scheme and v1alpha1.AddToScheme): %w", obj, err)
		}
	}
	src, err := newInformerSource(mgr.GetConfig(), mgr.GetScheme(), mgr.GetRESTMapper())
	if err != nil {
		return nil, fmt.Errorf("traffic controller: %w", err)
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = mgr.GetLogger().WithName("traffic")
	}
	c, err := newController(srv, src, opts)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(c); err != nil {
		return nil, fmt.Errorf("traffic controller: add to manager: %w", err)
	}
	return c, nil
}

func newController(srv *server.Server, src source, opts Options) (*Controller, error) {
	reg := opts.Registerer
	if reg == nil {
		reg = crmetrics.Registry
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("traffic controller: %w", err)
	}
	c := &Controller{
		srv:       srv,
		source:    src,
		log:       opts.Logger,
		metrics:   m,
		debounce:  opts.Debounce,
		retry:     opts.Retry,
		topts:     opts.Translate,
		wake:      make(chan struct{}, 1),
		urgent:    make(chan struct{}, 1),
		changed:   make(chan struct{}),
		lastGood:  map[ServiceKey]router.Service{},
		peers:     opts.Peers,
		replica:   cmp.Or(opts.Replica, "this replica"),
		peerGrace: opts.PeerGrace,

		deletionWait: cmp.Or(max(opts.CanaryDeletionWait, 0), DefaultCanaryDeletionWait),
	}
	if c.peerGrace <= 0 {
		c.peerGrace = DefaultPeerGrace
	}
	if c.debounce <= 0 {
		c.debounce = DefaultDebounce
	}
	if c.retry <= 0 {
		c.retry = DefaultRetry
	}
	return c, nil
}

// NeedLeaderElection is false: every replica serves its own xDS clients.
func (c *Controller) NeedLeaderElection() bool { return false }

// Start watches the cluster and publishes until ctx ends. It publishes once as
// soon as the informers have synced, then after every change.
func (c *Controller) Start(ctx context.Context) error {
	if err := c.source.run(ctx, c.trigger); err != nil {
		return fmt.Errorf("traffic controller: start informers: %w", err)
	}
	c.log.Info("informers synced; publishing routes")
	for {
		if err := c.publish(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Error(err, "publish routes; retrying", "after", c.retry)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.retry):
			}
			continue
		}
		if !c.next(ctx) {
			return nil
		}
	}
}

// trigger records a change; urgent changes skip the debounce.
func (c *Controller) trigger(urgent bool) {
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if urgent {
		select {
		case c.urgent <- struct{}{}:
		default:
		}
	}
}

// next waits for a change and its debounce; false means ctx ended.
func (c *Controller) next(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-c.urgent:
	case <-c.wake:
		t := time.NewTimer(c.debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-c.urgent:
			t.Stop()
		case <-t.C:
		}
	}
	// Everything that happened so far is covered by the list that follows.
	for _, ch := range []chan struct{}{c.wake, c.urgent} {
		select {
		case <-ch:
		default:
		}
	}
	return true
}

// Problems returns the problems found in the cluster objects at the last
// publication, sorted by service.
func (c *Controller) Problems() []Problem {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Problem(nil), c.problems...)
}

// ServiceProblems returns the problems found at the last publication that
// concern the service namespace/service, sorted: what the controller could
// not publish as the cluster objects ask, and what it did instead. The
// rollout controller shows them on the service's Rollout.
func (c *Controller) ServiceProblems(namespace, service string) []Problem {
	k := ServiceKey{Namespace: namespace, Name: service}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Problem
	for _, p := range c.problems {
		if p.Service == k {
			out = append(out, p)
		}
	}
	return out
}

// logProblems logs the problems that were not there at the last publication.
func (c *Controller) logProblems(problems []Problem) {
	c.mu.Lock()
	old := map[string]bool{}
	for _, p := range c.problems {
		old[p.String()] = true
	}
	c.problems = problems
	c.mu.Unlock()
	for _, p := range problems {
		if !old[p.String()] {
			c.log.Info("cluster object problem", "service", p.Service.String(), "object", p.Object, "problem", p.Message)
		}
	}
	c.metrics.problems.Set(float64(len(problems)))
}
