package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/notify"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/lrs/callers"
)

// callersInterval is how often the leader writes each Rollout's
// status.callers (only when its totals changed).
const callersInterval = 10 * time.Second

// callerWriter writes, on the leader, who calls each service and how their
// requests fare (status.callers) from the fleet-wide per-identity load: what
// the dashboard's across-teams view reads with the user's own rights.
type callerWriter struct {
	client client.Client
	agg    *lrs.Aggregator
	log    logr.Logger

	since  map[callers.Service]time.Time
	prev   map[callers.Service]map[string]callers.Load
	prevAt time.Time
	// externals writes the load on external dependencies.
	externals *externalWriter
	// alerts judges each caller's load on what it calls.
	alerts *dependencyAlerts
}

// addCallerWriter adds the writer to the manager (leader only).
func addCallerWriter(mgr manager.Manager, agg *lrs.Aggregator, notifier *notify.Notifier, log logr.Logger) error {
	alerts, err := newDependencyAlerts(notifier, ctrlmetrics.Registry)
	if err != nil {
		return fmt.Errorf("dependency alerts: %w", err)
	}
	return mgr.Add(&callerWriter{client: mgr.GetClient(), agg: agg, alerts: alerts, log: log.WithName("callers")})
}

// NeedLeaderElection: one writer, the leader, whose aggregator holds every
// replica's forwarded load.
func (w *callerWriter) NeedLeaderElection() bool { return true }

// Start writes every callersInterval until ctx ends.
func (w *callerWriter) Start(ctx context.Context) error {
	w.since, w.prev, w.externals = map[callers.Service]time.Time{}, nil, newExternalWriter()
	w.alerts.restart()
	tick := time.NewTicker(callersInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := w.write(ctx, time.Now()); err != nil {
			w.log.Error(err, "write callers to the Rollouts' status")
		}
	}
}

func (w *callerWriter) write(ctx context.Context, now time.Time) error {
	var ros v1alpha1.RolloutList
	if err := w.client.List(ctx, &ros); err != nil {
		return fmt.Errorf("list rollouts: %w", err)
	}
	origins := w.agg.Origins()
	externals := callers.Externals(origins)
	if n, err := w.externals.write(ctx, w.client, externals, now); err != nil {
		w.log.Error(err, "write the load on external dependencies", "namespacesFailed", n)
	}
	samples, err := externalSamples(ctx, w.client, externals)
	if err != nil {
		// The services' callers are still written and judged.
		w.log.Error(err, "read the external dependencies' ceilings; not judged this time")
	}
	idx := callers.Build(origins)
	next := make(map[callers.Service]map[string]callers.Load, len(ros.Items))
	var failed int
	for i := range ros.Items {
		ro := &ros.Items[i]
		name := ro.Spec.Delivery.Service
		if name == "" {
			name = ro.Name
		}
		svc := callers.Service{Namespace: ro.Namespace, Name: name}
		loads := idx.Loads(svc, ro.Status.CanaryRevision)
		next[svc] = loads
		samples = append(samples, serviceSamples(ro, svc, loads)...)
		if len(loads) == 0 {
			continue
		}
		since, ok := w.since[svc]
		if !ok {
			since = now
			w.since[svc] = now
		}
		var prev map[string]callers.Load
		if w.prev != nil {
			prev = w.prev[svc]
			if prev == nil {
				prev = map[string]callers.Load{}
			}
		}
		st := callers.Status(loads, prev, since, w.prevAt, now)
		if callers.Same(st, ro.Status.Callers) {
			continue
		}
		if err := w.patch(ctx, ro, st); err != nil {
			failed++
			w.log.Error(err, "write callers", "rollout", types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name})
		}
	}
	w.prev, w.prevAt = next, now
	for svc := range w.since {
		if _, ok := next[svc]; !ok {
			delete(w.since, svc) // gone, or no load: counted afresh if it returns
		}
	}
	w.alerts.observe(ctx, samples, now)
	if failed > 0 {
		return fmt.Errorf("%d of %d Rollouts not written", failed, len(ros.Items))
	}
	return nil
}

// patch merges st into the Rollout's status.callers: a merge patch of that
// field alone, so it never overwrites what the rollout controller writes.
func (w *callerWriter) patch(ctx context.Context, ro *v1alpha1.Rollout, st *v1alpha1.CallerStatus) error {
	body, err := json.Marshal(map[string]any{"status": map[string]any{"callers": st}})
	if err != nil {
		return err
	}
	return w.client.Status().Patch(ctx, ro, client.RawPatch(types.MergePatchType, body))
}
