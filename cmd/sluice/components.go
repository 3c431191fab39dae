package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluice-dev/sluice/rollout"
	"github.com/sluice-dev/sluice/rollout/metrics"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/traffic"
	"github.com/sluice-dev/sluice/webhook"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
)

// loadReportRetention is how much load-report history the analysis keeps:
// at least its longest window.
const loadReportRetention = 10 * time.Minute

// components are the shared parts the admission, traffic and rollout halves
// are wired to.
type components struct {
	xds   *server.Server
	loads *lrs.Server
	// fleet reaches the other replicas; nil when this one is alone.
	fleet     *server.PeerPool
	namespace string
	self      string // Sluice's own user name, for the webhooks
	replica   string // this replica's name
	// incarnation is this process's name among the load counters' sources.
	incarnation string
	prometheus  *metrics.Prometheus // nil: load reports only
	log         logr.Logger
	// canaryDeletionWait is --canary-deletion-wait.
	canaryDeletionWait time.Duration
}

// addComponents adds the admission webhooks, the traffic controller and the
// rollout controller to the manager.
func addComponents(mgr manager.Manager, c components) error {
	hooks, err := webhook.Register(mgr, webhook.Options{Namespace: c.namespace, Self: c.self})
	if err != nil {
		return fmt.Errorf("admission webhooks: %w", err)
	}
	if err := mgr.AddReadyzCheck("policies", hooks.ReadyCheck()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook-server", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}

	topts := traffic.Options{Logger: c.log.WithName("traffic"), Replica: c.replica, CanaryDeletionWait: c.canaryDeletionWait}
	if c.fleet != nil {
		// A step counts when the proxies of every replica carry it.
		topts.Peers = c.fleet.Peers
	}
	steer, err := traffic.New(mgr, c.xds, topts)
	if err != nil {
		return fmt.Errorf("traffic controller: %w", err)
	}
	// Load counts only for localities Sluice publishes now: a client cannot
	// make up clusters or revisions to grow counters and metric series.
	c.loads.Restrict(steer.Serves)

	samples, err := c.samples(mgr)
	if err != nil {
		return err
	}
	opts := rollout.Options{
		Traffic: rollout.TrafficFunc(func(ctx context.Context, namespace, service string, w router.Weight) (rollout.Confirmation, error) {
			got, err := steer.Confirm(ctx, namespace, service, w)
			conf := rollout.Confirmation{Acked: got.Acked, Nacked: got.Nacked, NackMessages: got.NackMessages, Stale: got.Stale, Replicas: got.Replicas, Limits: got.Limits}
			for _, h := range got.Holding {
				conf.Holding = append(conf.Holding, steer.DescribeHolder(h))
			}
			for _, h := range got.Overdue {
				conf.Overdue = append(conf.Overdue, steer.DescribeHolder(h))
			}
			return conf, err
		}),
		Reports: rollout.TrafficReporterFunc(func(namespace, service string) rollout.TrafficReport {
			var r rollout.TrafficReport
			for _, p := range steer.ServiceProblems(namespace, service) {
				r.Problems = append(r.Problems, p.Object+": "+p.Message)
			}
			for _, n := range steer.Nacks(namespace, service) {
				r.Nacks = append(r.Nacks, n.Node+" on "+n.Replica+" rejected "+strings.Join(n.Resources, ", ")+": "+n.Message)
			}
			return r
		}),
		Policies: hooks,
		Samples:  samples,
	}
	if c.prometheus != nil {
		opts.Custom = c.prometheus
	}
	if _, err := rollout.New(mgr, opts); err != nil {
		return fmt.Errorf("rollout controller: %w", err)
	}
	notifier, err := addNotifier(mgr, c.log)
	if err != nil {
		return err
	}
	if err := addCallerWriter(mgr, c.loads.Aggregator(), notifier, c.log); err != nil {
		return fmt.Errorf("callers: %w", err)
	}
	return nil
}

// samples is the analysis' source of per-track request and error counts:
// Prometheus when configured, else the data plane's load reports.
//
// With several replicas each receives only its own clients' load reports;
// the totals read here are the aggregator's, which merges what other
// replicas forward (xds/lrs Forwarder) with this replica's own.
func (c components) samples(mgr manager.Manager) (metrics.Source, error) {
	if c.prometheus != nil {
		return c.prometheus, nil
	}
	reports, err := metrics.NewLoadReports(loadTotals(c.loads.Aggregator(), c.incarnation), loadReportRetention)
	if err != nil {
		return nil, fmt.Errorf("load-report source: %w", err)
	}
	// Every replica keeps the history, not only the leader: a new leader
	// then judges on the same windows at once.
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		return reports.Run(ctx, time.Second)
	})); err != nil {
		return nil, err
	}
	return reports, nil
}

// everyReplica is a runnable that runs on every replica, leader or not.
type everyReplica func(ctx context.Context) error

// Start runs f.
func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection says f runs without the lease.
func (f everyReplica) NeedLeaderElection() bool { return false }
