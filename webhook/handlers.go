package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sluice-dev/sluice/policies"
)

// handlers are the admission handlers and what they share. They read only
// from the informer cache and the policy store; everything they write
// (Events, policy status) happens later, off the admission path.
type handlers struct {
	store   *PolicyStore
	reader  client.Reader
	now     func() time.Time
	metrics *metrics
	audit   *auditor
	// ownNamespace is never governed by policies, so Sluice cannot lock
	// itself out even if its webhook configuration is edited by hand.
	ownNamespace string
	// self is the user name Sluice's own API requests carry; only its
	// writes make canaries. Empty: nobody's do.
	self string
	// namespaceWait bounds how long a request waits for the cache to learn
	// about a namespace created just before it.
	namespaceWait time.Duration
	// celNamespaces memoizes namespaces as CEL rules read them.
	celNamespaces namespaceMemo[celNamespace]
}

// celNamespace is a prepared namespace, or why it could not be.
type celNamespace struct {
	ns  *policies.CELNamespace
	err error
}

// celNamespace is ns prepared for CEL rules, once per resourceVersion.
func (h *handlers) celNamespace(ns *corev1.Namespace) (*policies.CELNamespace, error) {
	c := h.celNamespaces.get(ns, func() celNamespace {
		c, err := policies.NewCELNamespace(ns)
		return celNamespace{c, err}
	})
	return c.ns, c.err
}

// Group kinds named in denials.
var (
	deploymentGK       = schema.GroupKind{Group: appsv1.GroupName, Kind: "Deployment"}
	deploymentPolicyGK = schema.GroupKind{Group: "sluice.dev", Kind: "DeploymentPolicy"}
)

// Kinds, the values of the kind label of the admission metrics.
const (
	kindDeployment       = "Deployment"
	kindDeploymentPolicy = "DeploymentPolicy"
)

// instrument wraps a handler with the request counter and latency histogram.
func (h *handlers) instrument(kind string, next admission.HandlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) admission.Response {
		start := time.Now()
		resp := next(ctx, req)
		h.metrics.duration.WithLabelValues(string(req.Operation), kind).Observe(time.Since(start).Seconds())
		h.metrics.requests.WithLabelValues(string(req.Operation), kind, decision(resp)).Inc()
		return resp
	}
}

// decision classifies a response for MetricRequests.
func decision(resp admission.Response) string {
	switch {
	case !resp.Allowed && resp.Result != nil && resp.Result.Code >= 500:
		return DecisionError
	case !resp.Allowed && resp.Result != nil && resp.Result.Code == http.StatusBadRequest:
		return DecisionError
	case !resp.Allowed:
		return DecisionDenied
	case len(resp.Patch) > 0:
		return DecisionPatched
	case len(resp.Warnings) > 0:
		return DecisionWarned
	default:
		return DecisionAllowed
	}
}

// namespace returns the Namespace from the cache, waiting up to
// namespaceWait for one created moments ago to reach the cache.
func (h *handlers) namespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	if name == "" {
		return nil, errors.New("the admission request names no namespace")
	}
	ns := &corev1.Namespace{}
	deadline := time.Now().Add(h.namespaceWait)
	for {
		err := h.reader.Get(ctx, types.NamespacedName{Name: name}, ns)
		if err == nil {
			return ns, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read namespace %s from the cache: %w", name, err)
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("namespace %s is not known to Sluice yet; retry in a moment", name)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for namespace %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// invalid denies with field errors, as kube-apiserver's own validation
// does, so kubectl shows each path.
func invalid(gk schema.GroupKind, name string, errs field.ErrorList, warnings []string) admission.Response {
	st := apierrors.NewInvalid(gk, name, errs).Status()
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed:  false,
		Result:   &st,
		Warnings: warnings,
	}}
}
