// Package leadership runs a replica's leader-only work for as long as the
// replica holds the lease, and campaigns again when it loses it.
//
// controller-runtime's own leader election ends the whole process when the
// lease is lost: every webhook call and xDS stream of that replica fails
// until it restarts. Sluice serves admission and xDS on every replica, so
// only the leader's work (driving rollouts, rotating certificates) may stop:
// a [Campaign] is an ordinary runnable of the manager that starts that work
// in a term of its own and ends the term, not the process.
package leadership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Defaults of the lease timing, those of controller-runtime and kube
// components.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Campaign holds leader-only runnables and runs them during each term this
// replica leads. Every runnable must be restartable: it is started anew, with
// a fresh context, at the start of every term, and its context is cancelled
// when the term ends.
type Campaign struct {
	// Lock is the lease; nil means there is no election and the work runs
	// in one term that lasts until the campaign stops.
	Lock resourcelock.Interface
	// Lease timing; zero values mean the defaults above.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Logger receives term starts and ends.
	Logger logr.Logger

	mu      sync.Mutex
	work    []manager.Runnable
	started bool

	leading atomic.Bool
	terms   prometheus.Counter
	gauge   prometheus.Gauge
}

var _ manager.LeaderElectionRunnable = (*Campaign)(nil)

// Add registers leader-only work; it fails once the campaign has started.
func (c *Campaign) Add(r manager.Runnable) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("leader-only work added after the campaign started")
	}
	c.work = append(c.work, r)
	return nil
}

// Register exports sluice_leader (1 while this replica leads) and
// sluice_leader_terms_total.
func (c *Campaign) Register(reg prometheus.Registerer) error {
	c.gauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_leader",
		Help: "1 while this replica holds the leader lease and runs the leader-only work (rollouts, certificate rotation), else 0.",
	})
	c.terms = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_leader_terms_total",
		Help: "Terms this replica has led since it started.",
	})
	for _, m := range []prometheus.Collector{c.gauge, c.terms} {
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("register leadership metrics: %w", err)
		}
	}
	return nil
}

// Leading reports whether this replica runs the leader-only work now.
func (c *Campaign) Leading() bool { return c.leading.Load() }

// NeedLeaderElection is false: the campaign runs on every replica; only
// the work it holds waits for the lease.
func (c *Campaign) NeedLeaderElection() bool { return false }

// Start campaigns until ctx ends. It returns an error only when a piece of
// leader-only work fails (which ends the process, as any runnable's error
// does), never because the lease was lost.
func (c *Campaign) Start(ctx context.Context) error {
	c.mu.Lock()
	c.started = true
	work := append([]manager.Runnable(nil), c.work...)
	c.mu.Unlock()
	if c.Lock == nil {
		return c.term(ctx, work)
	}
	for ctx.Err() == nil {
		if err := c.campaign(ctx, work); err != nil {
			return err
		}
	}
	return nil
}

// campaign waits for the lease, leads one term and returns once the term's
// work has stopped: when the lease is lost, ctx ends, or the work fails (its
// error is returned).
func (c *Campaign) campaign(ctx context.Context, work []manager.Runnable) error {
	run, stop := context.WithCancel(ctx)
	defer stop()
	// The elector calls OnStartedLeading in a goroutine and may return
	// before that goroutine runs: the term either started (and is waited
	// for) or is abandoned before it starts, never both.
	var (
		mu        sync.Mutex
		started   bool
		abandoned bool
		ended     = make(chan error, 1)
	)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          c.Lock,
		LeaseDuration: orDefault(c.LeaseDuration, DefaultLeaseDuration),
		RenewDeadline: orDefault(c.RenewDeadline, DefaultRenewDeadline),
		RetryPeriod:   orDefault(c.RetryPeriod, DefaultRetryPeriod),
		// Release at once when the replica stops, so another takes over
		// without waiting out the lease.
		ReleaseOnCancel: true,
		Name:            c.Lock.Describe(),
		Callbacks: leaderelection.LeaderCallbacks{
			// Called in a goroutine of its own; its context ends when the
			// lease is lost.
			OnStartedLeading: func(term context.Context) {
				mu.Lock()
				if abandoned {
					mu.Unlock()
					return
				}
				started = true
				mu.Unlock()
				err := c.term(term, work)
				if err != nil {
					stop() // give the lease up: the process is ending
				}
				ended <- err
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	c.Logger.Info("campaigning for the leader lease", "lease", c.Lock.Describe(), "identity", c.Lock.Identity())
	le.Run(run)
	mu.Lock()
	abandoned = !started
	mu.Unlock()
	if abandoned {
		return nil
	}
	err = <-ended
	if err == nil && ctx.Err() == nil {
		c.Logger.Info("leader lease lost: leader-only work stopped; webhooks and xDS keep serving; campaigning again", "lease", c.Lock.Describe())
	}
	return err
}

// term runs the work until ctx ends or a piece of it fails, and returns
// after all of it has stopped.
func (c *Campaign) term(ctx context.Context, work []manager.Runnable) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.leading.Store(true)
	if c.gauge != nil {
		c.gauge.Set(1)
		c.terms.Inc()
	}
	defer func() {
		c.leading.Store(false)
		if c.gauge != nil {
			c.gauge.Set(0)
		}
	}()
	c.Logger.Info("leading: starting the leader-only work", "runnables", len(work))
	errc := make(chan error, len(work))
	for _, r := range work {
		go func() { errc <- r.Start(ctx) }()
	}
	var errs []error
	for range work {
		if err := <-errc; err != nil && ctx.Err() == nil {
			errs = append(errs, err)
			cancel() // one failed: stop the rest, then report
		}
	}
	return errors.Join(errs...)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
