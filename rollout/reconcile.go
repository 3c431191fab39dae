package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/rollout/analysis"
	"github.com/sluice-dev/sluice/rollout/metrics"
)

// Reconcile observes one Deployment's delivery, steps the state machine,
// stores the Rollout's status and carries out the actions.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	var d appsv1.Deployment
	if err := c.client.Get(ctx, req.NamespacedName, &d); err != nil {
		if apierrors.IsNotFound(err) {
			if svc, ok := c.services.LoadAndDelete(req.NamespacedName); ok {
				c.gauges.forget(req.Namespace, svc.(string))
			}
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("get deployment: %w", err)
	}
	if _, canary := v1alpha1.CanaryOwner(&d); canary || !d.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	var ro v1alpha1.Rollout
	exists := true
	if err := c.client.Get(ctx, req.NamespacedName, &ro); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("get rollout: %w", err)
		}
		exists = false
	}
	if !exists && !opted(v1alpha1.DeliveryMode(d.Annotations[v1alpha1.AnnotationRollout])) {
		return reconcile.Result{}, nil
	}
	delivery, err := c.resolve(ctx, &d)
	if err != nil {
		return c.invalid(ctx, &d, &ro, exists, err)
	}
	if !exists {
		ro = *NewRollout(&d, delivery)
		if err := c.client.Create(ctx, &ro); err != nil {
			return reconcile.Result{}, fmt.Errorf("create rollout: %w", err)
		}
		log.Info("created rollout", "service", delivery.Service, "mode", delivery.Mode)
	} else if !equality.Semantic.DeepEqual(ro.Spec.Delivery, delivery) {
		ro.Spec.Delivery = delivery
		if err := c.client.Update(ctx, &ro); err != nil {
			return reconcile.Result{}, fmt.Errorf("update rollout delivery: %w", err)
		}
	}
	c.services.Store(req.NamespacedName, delivery.Service)

	var canary *appsv1.Deployment
	var cd appsv1.Deployment
	switch err := c.client.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: v1alpha1.CanaryName(d.Name)}, &cd); {
	case err == nil:
		if owner, ok := v1alpha1.CanaryOwner(&cd); !ok || owner != d.Name {
			return c.invalid(ctx, &d, &ro, true, fmt.Errorf(
				"deployment %s already exists and is not this rollout's canary; rename or delete it", cd.Name))
		}
		canary = &cd
	case !apierrors.IsNotFound(err):
		return reconcile.Result{}, fmt.Errorf("get canary: %w", err)
	}

	o := c.observe(ctx, &d, canary, &ro)
	r := Step(o)
	r.Status.ObservedGeneration = ro.Generation
	if !equality.Semantic.DeepEqual(ro.Status, r.Status) {
		ro.Status = r.Status
		if err := c.client.Status().Update(ctx, &ro); err != nil {
			if apierrors.IsConflict(err) {
				return reconcile.Result{Requeue: true}, nil
			}
			return reconcile.Result{}, fmt.Errorf("update rollout status: %w", err)
		}
	}
	for _, e := range r.Events {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		c.events.Eventf(&ro, nil, typ, e.Reason, "Rollout", "%s", e.Message)
	}
	c.gauges.set(d.Namespace, delivery.Service, r.Status)
	for _, a := range r.Actions {
		if err := c.do(ctx, a, &d, canary, &ro, delivery.Service); err != nil {
			return reconcile.Result{}, fmt.Errorf("%s: %w", a.Kind, err)
		}
	}
	return reconcile.Result{RequeueAfter: r.RequeueAfter}, nil
}

// observe gathers what Step needs: the objects' views, the proxies'
// confirmation and the metric samples.
func (c *Controller) observe(ctx context.Context, d, canary *appsv1.Deployment, ro *v1alpha1.Rollout) Observed {
	dv := ViewDeployment(d)
	o := Observed{Deployment: &dv, Spec: ro.Spec, Status: ro.Status, Now: time.Now()}
	if canary != nil {
		cv := ViewCanary(canary)
		o.Canary = &cv
	}
	n := NeedsOf(o)
	svc := ro.Spec.Delivery.Service
	report := c.opts.Reports.Report(d.Namespace, svc)
	o.Traffic = &report
	if n.Confirm != nil {
		w, err := n.Confirm.Weight()
		var conf Confirmation
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, c.opts.ConfirmTimeout)
			conf, err = c.opts.Traffic.Confirm(cctx, d.Namespace, svc, w)
			cancel()
		}
		switch {
		case err == nil:
			o.Confirmed = &Confirmed{Weight: *n.Confirm, Confirmation: conf}
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			// Not yet acknowledged; the status says what it waits for.
			o.Unconfirmed = strings.TrimSuffix(err.Error(), ": "+context.DeadlineExceeded.Error())
		default:
			ctrl.LoggerFrom(ctx).Error(err, "confirm weight", "service", svc, "weight", *n.Confirm)
			o.Unconfirmed = err.Error()
		}
	}
	if n.Analyse {
		in := c.samples(ctx, d.Namespace, svc, ro.Status.CanaryRevision, ro.Spec.Delivery, n)
		if src, ok := c.opts.Samples.(metrics.CounterSource); ok && !n.Since.IsZero() {
			counts := resume(ctx, src, d.Namespace, svc, ro.Status.CanaryRevision, n, ro.Status.Counts, &in.Cumulative)
			o.Counts = &counts
		}
		if src, ok := c.opts.Samples.(metrics.OriginSource); ok {
			p := provenance(ctx, src, d.Namespace, svc, ro.Status.CanaryRevision, n)
			in.Evidence = &analysis.Tracks{Stable: p.Stable.Evidence, Canary: p.Canary.Evidence}
			o.Provenance = &p
		}
		o.Samples = &in
	}
	o.Now = time.Now()
	return o
}

// samples asks the sources for both tracks over the recent and cumulative
// windows, and for the custom queries' values. The canary's samples are
// those of its revision only; the cumulative window starts when the revision
// did (n.Since).
func (c *Controller) samples(ctx context.Context, namespace, service, canaryRevision string, d v1alpha1.Delivery, n Needs) analysis.Input {
	recent, cumulative := n.Recent, n.Cumulative
	obs := func(track string, w time.Duration, since time.Time) analysis.TrackSample {
		q := trackQuery(namespace, service, track, canaryRevision, w, since)
		if track == v1alpha1.TrackCanary && d.MaxLatencyP99 != nil {
			// Sources with a latency histogram count the slow requests: the latency ceiling is then sequential.
			q.SlowerThan = d.MaxLatencyP99.Duration
		}
		return metrics.Observe(ctx, c.opts.Samples, q)
	}
	in := analysis.Input{
		Recent: analysis.Tracks{Stable: obs(v1alpha1.TrackStable, recent, time.Time{}), Canary: obs(v1alpha1.TrackCanary, recent, time.Time{})},
		Cumulative: analysis.Tracks{Stable: obs(v1alpha1.TrackStable, cumulative, n.Since),
			Canary: obs(v1alpha1.TrackCanary, cumulative, n.Since)},
	}
	if d.Analysis == nil {
		return in
	}
	for _, q := range d.Analysis.Queries {
		in.Custom = append(in.Custom, c.custom(ctx, q, metrics.Query{Namespace: namespace, Service: service,
			Track: v1alpha1.TrackCanary, Window: max(cumulative.Truncate(time.Second), time.Second)}))
	}
	return in
}

// trackQuery asks for one track over window w (whole seconds, at least
// one) or since since; the canary's only for its revision.
func trackQuery(namespace, service, track, canaryRevision string, w time.Duration, since time.Time) metrics.Query {
	q := metrics.Query{Namespace: namespace, Service: service, Track: track,
		Window: max(w.Truncate(time.Second), time.Second), Since: since}
	if track == v1alpha1.TrackCanary {
		q.Revision = canaryRevision
	}
	return q
}

// resume reads the per-source counters of both tracks since the canary
// revision began, merges them with the counts the status persisted
// (ResumeCounts) and puts the result in cumulative, so that the analysis
// continues across a restart of every replica. A track whose counters cannot
// be read keeps the sample the source gave (absent, saying why) while its
// persisted counters are carried to the next evaluation.
func resume(ctx context.Context, src metrics.CounterSource, namespace, service, canaryRevision string, n Needs,
	prev *v1alpha1.AnalysisCounts, cumulative *analysis.Tracks) v1alpha1.AnalysisCounts {
	read := func(track string) (map[string]metrics.Counter, bool) {
		c, err := src.Counters(ctx, trackQuery(namespace, service, track, canaryRevision, n.Cumulative, n.Since))
		return c, err == nil
	}
	canary, canaryOK := read(v1alpha1.TrackCanary)
	stable, stableOK := read(v1alpha1.TrackStable)
	out := ResumeCounts(prev, canaryRevision, n.Since, Readings{Canary: canary, Stable: stable})
	if canaryOK {
		cumulative.Canary = resumed(cumulative.Canary, out.Canary)
	}
	if stableOK {
		cumulative.Stable = resumed(cumulative.Stable, out.Stable)
	}
	return out
}

// resumed is s with the resumed counts in place of the live ones.
func resumed(s analysis.TrackSample, c v1alpha1.RequestCounts) analysis.TrackSample {
	s.Present, s.Problem, s.SourceFailed = true, "", false
	s.Requests = uint64(max(c.Requests, 0))
	s.Errors = min(uint64(max(c.Errors, 0)), s.Requests)
	return s
}

// provenance asks src where each track's cumulative sample came from and
// what of it is promotion evidence. A track whose origins cannot be read has
// an absent evidence sample that says why: the analysis then holds.
func provenance(ctx context.Context, src metrics.OriginSource, namespace, service, canaryRevision string, n Needs) Provenance {
	track := func(track string) analysis.Provenance {
		origins, err := src.Origins(ctx, trackQuery(namespace, service, track, canaryRevision, n.Cumulative, n.Since))
		if err != nil {
			return analysis.Provenance{Evidence: analysis.TrackSample{Problem: "promotion evidence: " + err.Error(),
				SourceFailed: !errors.Is(err, metrics.ErrNoData)}}
		}
		return analysis.PromotionEvidence(origins)
	}
	return Provenance{Stable: track(v1alpha1.TrackStable), Canary: track(v1alpha1.TrackCanary)}
}

// placeholders maps the DeploymentPolicy's query placeholders to the
// metrics package's template fields.
var placeholders = strings.NewReplacer(
	"{{namespace}}", "{{.Namespace}}", "{{service}}", "{{.Service}}", "{{track}}", "{{.Track}}")

func (c *Controller) custom(ctx context.Context, q v1alpha1.MetricQuery, mq metrics.Query) analysis.CustomSample {
	if strings.Contains(q.Query, "{{revision}}") {
		return analysis.CustomSample{Name: q.Name, SourceFailed: true,
			Problem: "the {{revision}} placeholder is not supported; select the canary with {{track}}"}
	}
	cq, err := metrics.NewCustomQuery(q.Name, placeholders.Replace(q.Query))
	if err != nil {
		return analysis.CustomSample{Name: q.Name, Problem: err.Error(), SourceFailed: true}
	}
	if c.opts.Custom == nil {
		return analysis.CustomSample{Name: q.Name, SourceFailed: true,
			Problem: "no Prometheus is configured for custom queries"}
	}
	return c.opts.Custom.Custom(ctx, cq, mq)
}

// resolve reads the namespace and resolves d's delivery as admission does,
// with the same compiled policies (policies.ResolveDelivery). A policy that
// does not compile gives no defaults here as there, and holds no rollout.
func (c *Controller) resolve(ctx context.Context, d *appsv1.Deployment) (v1alpha1.Delivery, error) {
	var ns corev1.Namespace
	if err := c.client.Get(ctx, types.NamespacedName{Name: d.Namespace}, &ns); err != nil {
		return v1alpha1.Delivery{}, fmt.Errorf("get namespace: %w", err)
	}
	compiled, err := c.opts.Policies.Policies()
	if err != nil {
		return v1alpha1.Delivery{}, fmt.Errorf("deployment policies: %w", err)
	}
	delivery, errs := policies.ResolveDelivery(compiled, d, ns.Labels)
	if len(errs) > 0 {
		return v1alpha1.Delivery{}, fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, errs.ToAggregate())
	}
	return delivery, nil
}

// invalid reports a delivery that cannot proceed on the Rollout and as a
// Warning event, and looks again later.
func (c *Controller) invalid(ctx context.Context, d *appsv1.Deployment, ro *v1alpha1.Rollout, exists bool, cause error) (reconcile.Result, error) {
	msg := "held: " + cause.Error()
	c.events.Eventf(d, nil, corev1.EventTypeWarning, "InvalidDelivery", "Rollout", "%s", msg)
	if exists && ro.Status.Message != msg {
		ro.Status.Message = msg
		if err := c.client.Status().Update(ctx, ro); err != nil && !apierrors.IsConflict(err) {
			return reconcile.Result{}, fmt.Errorf("update rollout status: %w", err)
		}
	}
	return reconcile.Result{RequeueAfter: 30 * time.Second}, nil
}

// do carries out one action.
func (c *Controller) do(ctx context.Context, a Action, d, canary *appsv1.Deployment, ro *v1alpha1.Rollout, service string) error {
	switch a.Kind {
	case EnsureCanary:
		want := CanaryDeployment(d, ro, service, a.Replicas)
		if canary == nil {
			return client.IgnoreAlreadyExists(c.client.Create(ctx, want))
		}
		// The stored template carries the API server's defaults and the
		// webhook's labels: compare revisions, else what we would set.
		rev := want.Spec.Template.Labels[v1alpha1.LabelRevision]
		sameTemplate := rev != "" && canary.Spec.Template.Labels[v1alpha1.LabelRevision] == rev
		if !sameTemplate {
			sameTemplate = equality.Semantic.DeepDerivative(want.Spec.Template, canary.Spec.Template)
		}
		if sameTemplate && equality.Semantic.DeepEqual(canary.Spec.Replicas, want.Spec.Replicas) {
			return nil
		}
		upd := canary.DeepCopy()
		upd.Spec.Template = want.Spec.Template
		upd.Spec.Replicas = want.Spec.Replicas
		return c.client.Update(ctx, upd)
	case DeleteCanary:
		if canary == nil {
			return nil
		}
		return client.IgnoreNotFound(c.client.Delete(ctx, canary, client.Preconditions{UID: &canary.UID},
			client.PropagationPolicy(metav1.DeletePropagationBackground)))
	case UnpauseDeployment:
		// The patch names the resourceVersion the decision was taken on: a
		// Deployment changed since (a newer revision admitted and paused by
		// the webhook) is refused with a conflict and looked at again,
		// never unpaused on a stale decision.
		rv := ""
		if d.ResourceVersion != "" {
			rv = fmt.Sprintf(`"resourceVersion":%q,`, d.ResourceVersion)
		}
		patch := []byte(fmt.Sprintf(`{"metadata":{%s"annotations":{%q:null}},"spec":{"paused":false}}`, rv, v1alpha1.AnnotationPendingRevision))
		return c.client.Patch(ctx, d, client.RawPatch(types.MergePatchType, patch))
	case ClearRequests:
		if ro.Spec.Promote == nil && ro.Spec.Abort == nil && ro.Spec.RetryRevision == "" {
			return nil
		}
		base := ro.DeepCopy()
		ro.Spec.Promote, ro.Spec.Abort, ro.Spec.RetryRevision = nil, nil, ""
		return c.client.Patch(ctx, ro, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}
