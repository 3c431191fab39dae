package webhook

import (
	"context"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/router"
)

var jsonPatchType = admissionv1.PatchTypeJSONPatch

// mutateDeployment answers the mutating webhook: Sluice's labels, the
// policies' labels and the pause on a new revision, as a JSON patch.
func (h *handlers) mutateDeployment(ctx context.Context, req *deploymentRequest) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	d, old := req.Object, req.Old
	ns, err := h.namespace(ctx, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusServiceUnavailable, err)
	}
	m, err := Mutate(MutationInput{
		Operation:     req.Operation,
		Deployment:    d,
		OldDeployment: old,
		Canary:        h.canaryTrack(req),
		Team:          ns.Labels[v1alpha1.LabelTeam],
		InjectLabels:  h.store.Snapshot().InjectLabelsFor(ns),
	})
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	resp := admission.Allowed("")
	if len(m.Ops) == 0 {
		return resp
	}
	if resp.Patch, err = MarshalPatch(m.Ops); err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	resp.PatchType = &jsonPatchType
	return resp
}

// validateDeployment answers the Deployment validating webhook.
func (h *handlers) validateDeployment(ctx context.Context, req *deploymentRequest) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	d, old := req.Object, req.Old
	if h.ownNamespace != "" && req.Namespace == h.ownNamespace {
		return admission.Allowed("Sluice's own namespace is not governed by DeploymentPolicies")
	}
	exempt, why, err := h.exemptCanary(ctx, req)
	if err != nil {
		return admission.Errored(http.StatusServiceUnavailable, err)
	}
	if exempt {
		return admission.Allowed(why)
	}
	ns, err := h.namespace(ctx, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusServiceUnavailable, err)
	}
	celNS, err := h.celNamespace(ns)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	snap := h.store.Snapshot()
	r := policies.Evaluate(snap.Compiled, policies.Input{
		CELNamespace:     celNS,
		CELReads:         snap.CELReads,
		Operation:        req.Operation,
		Deployment:       d,
		OldDeployment:    old,
		Namespace:        ns,
		RawDeployment:    req.RawObject,
		RawOldDeployment: req.RawOld,
		Requester:        &policies.Requester{Username: req.UserInfo.Username, Groups: req.UserInfo.Groups},
	}, h.now())
	errs := r.FieldErrors()
	errs = append(errs, serviceNameErrors(d)...)
	if old != nil && !h.canaryTrack(req) {
		guard, err := h.failedRevisionGuard(ctx, d, old)
		if err != nil {
			return admission.Errored(http.StatusServiceUnavailable, err)
		}
		errs = append(errs, guard...)
	}
	broken, unapplied := snap.Unapplied(ns.Labels)
	errs = append(errs, broken...)
	warnings := append(r.Warnings(), unapplied...)
	if !req.dryRun() {
		h.record(d, r)
	}
	if len(errs) > 0 {
		return invalid(deploymentGK, d.Name, errs, warnings)
	}
	resp := admission.Allowed("")
	resp.Warnings = warnings
	if len(r.Bypassed) > 0 {
		// kube-apiserver prefixes the key with the webhook's name:
		// deployments.validate.sluice.dev/emergency-bypass.
		resp.AuditAnnotations = map[string]string{auditEmergencyBypass: policies.Truncate(r.BypassSummary(), maxAuditAnnotation)}
	}
	return resp
}

// record counts violations in metrics and status and emits audit Events.
func (h *handlers) record(d *appsv1.Deployment, r policies.Result) {
	for _, v := range r.Violations {
		h.metrics.violations.WithLabelValues(v.Policy, v.Rule, string(v.Mode)).Inc()
	}
	bypassed := map[string]bool{}
	for _, v := range r.Bypassed {
		h.metrics.violations.WithLabelValues(v.Policy, v.Rule, string(v.Mode)).Inc()
		if !bypassed[v.Policy] {
			bypassed[v.Policy] = true
			// Who bypassed is in the Event and the audit log, never in a
			// label: user names would make the series unbounded.
			h.metrics.bypasses.WithLabelValues(v.Policy, d.Namespace).Inc()
		}
	}
	h.audit.record(d, r)
}

// failedRevisionGuard refuses an UPDATE that brings an opted-in Deployment
// to a revision its Rollout rolled back, unless spec.retryRevision names it.
func (h *handlers) failedRevisionGuard(ctx context.Context, d, old *appsv1.Deployment) (field.ErrorList, error) {
	if !OptedIn(d) {
		return nil, nil
	}
	rev, err := storedRevision(d)
	if err != nil {
		return nil, err
	}
	oldRev, err := storedRevision(old)
	if err != nil {
		return nil, err
	}
	if rev == oldRev {
		return nil, nil
	}
	ro := &v1alpha1.Rollout{}
	if err := h.reader.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: d.Name}, ro); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read Rollout %s/%s from the cache: %w", d.Namespace, d.Name, err)
	}
	if ro.Spec.RetryRevision == rev {
		return nil, nil
	}
	for _, f := range ro.Status.FailedRevisions {
		if f.Revision != rev {
			continue
		}
		return field.ErrorList{field.Forbidden(field.NewPath("spec", "template"), fmt.Sprintf(
			"revision %s was rolled back at %s (%s); to try it again run `sluice retry %s -n %s`, then apply again",
			rev, f.Time.UTC().Format(time.RFC3339), f.Reason, d.Name, d.Namespace))}, nil
	}
	return nil, nil
}

// storedRevision is the revision label of d's pod template, or the revision
// computed from the template when the label is absent.
func storedRevision(d *appsv1.Deployment) (string, error) {
	if rev := d.Spec.Template.Labels[v1alpha1.LabelRevision]; rev != "" {
		return rev, nil
	}
	rev, err := Revision(&d.Spec.Template)
	if err != nil {
		return "", fmt.Errorf("revision of %s/%s: %w", d.Namespace, d.Name, err)
	}
	return rev, nil
}

// serviceNameErrors reports a Deployment whose logical service cannot be a
// label value: no sluice.dev/service annotation and a name longer than 63
// characters. (A malformed annotation is reported by ParseDelivery.)
func serviceNameErrors(d *appsv1.Deployment) field.ErrorList {
	if _, ok := d.Annotations[v1alpha1.AnnotationService]; ok || d.Name == "" || ServiceName(d) != "" {
		return nil
	}
	return field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), d.Name, fmt.Sprintf(
		"%v: the Deployment's name cannot name its service; set annotation %s, e.g. %s: checkout",
		router.CheckServiceName(d.Name), v1alpha1.AnnotationService, v1alpha1.AnnotationService))}
}
