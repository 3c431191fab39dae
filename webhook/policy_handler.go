package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// validatePolicy answers the DeploymentPolicy validating webhook: a policy
// that does not compile (CEL that does not type-check, an unknown time zone,
// an invalid selector...) is rejected with every problem under its path.
func (h *handlers) validatePolicy(_ context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	if req.Kind.Group != v1alpha1.GroupName || req.Kind.Kind != kindDeploymentPolicy {
		return admission.Errored(http.StatusBadRequest,
			fmt.Errorf("this webhook admits sluice.dev DeploymentPolicies, not %s", req.Kind.String()))
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("the admission request has no object"))
	}
	p := &v1alpha1.DeploymentPolicy{}
	if err := json.Unmarshal(req.Object.Raw, p); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode object as a DeploymentPolicy: %w", err))
	}
	if errs := policies.Validate(p); len(errs) > 0 {
		return invalid(deploymentPolicyGK, p.Name, errs, nil)
	}
	return admission.Allowed("")
}
