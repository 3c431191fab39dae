package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// ConfigurationName is the name of both webhook configurations.
const ConfigurationName = "sluice"

// Names of the webhooks inside the configurations.
const (
	WebhookMutateDeployment         = "deployments.mutate.sluice.dev"
	WebhookValidateDeployment       = "deployments.validate.sluice.dev"
	WebhookValidateDeploymentPolicy = "deploymentpolicies.validate.sluice.dev"
)

// DefaultTimeoutSeconds is the default webhook timeout: the handlers answer
// in about a millisecond, so a call that takes seconds is a broken replica,
// and a short timeout bounds what it costs every Deployment write.
const DefaultTimeoutSeconds int32 = 5

// ProtectedNamespaces are never sent to the Deployment webhooks, so a broken
// Sluice can never block the cluster's own components.
var ProtectedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// ConfigOptions describe where kube-apiserver reaches the webhooks and how
// it treats failures. Exactly one of URL and ServiceName is set.
type ConfigOptions struct {
	// URL is the https base URL for webhooks registered by URL, e.g.
	// https://127.0.0.1:9443 on the local cluster.
	URL string
	// ServiceNamespace, ServiceName and ServicePort locate the webhook
	// Service in a cluster (the chart); ServicePort defaults to 443.
	ServiceNamespace string
	ServiceName      string
	ServicePort      int32
	// OwnNamespace is Sluice's namespace, excluded like ProtectedNamespaces.
	OwnNamespace string
	// MutatingFailurePolicy defaults to Fail: without Sluice's labels the
	// traffic side cannot route a Deployment's pods.
	MutatingFailurePolicy *admissionregistrationv1.FailurePolicyType
	// ValidatingFailurePolicy defaults to Fail: policies are not enforced
	// while Sluice is down. Ignore trades that for availability.
	ValidatingFailurePolicy *admissionregistrationv1.FailurePolicyType
	// TimeoutSeconds applies to every webhook; default DefaultTimeoutSeconds,
	// at most 30 (kube-apiserver's limit).
	TimeoutSeconds int32
}

// Validate reports every problem in o.
func (o ConfigOptions) Validate() error {
	var errs []error
	switch {
	case o.URL == "" && o.ServiceName == "":
		errs = append(errs, errors.New("set either URL (e.g. https://127.0.0.1:9443) or ServiceName and ServiceNamespace"))
	case o.URL != "" && o.ServiceName != "":
		errs = append(errs, errors.New("set only one of URL and ServiceName"))
	case o.URL != "":
		u, err := url.Parse(o.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			errs = append(errs, fmt.Errorf("URL %q must be https://host[:port][/path] without user, query or fragment", o.URL))
		}
	case o.ServiceNamespace == "":
		errs = append(errs, errors.New("ServiceName needs ServiceNamespace"))
	}
	if o.ServicePort < 0 || o.ServicePort > 65535 {
		errs = append(errs, fmt.Errorf("ServicePort %d is not a port number", o.ServicePort))
	}
	if o.TimeoutSeconds < 0 || o.TimeoutSeconds > 30 {
		errs = append(errs, fmt.Errorf("TimeoutSeconds %d must be between 1 and 30 (0 means %d)", o.TimeoutSeconds, DefaultTimeoutSeconds))
	}
	for name, fp := range map[string]*admissionregistrationv1.FailurePolicyType{
		"MutatingFailurePolicy": o.MutatingFailurePolicy, "ValidatingFailurePolicy": o.ValidatingFailurePolicy,
	} {
		if fp != nil && *fp != admissionregistrationv1.Fail && *fp != admissionregistrationv1.Ignore {
			errs = append(errs, fmt.Errorf("%s %q must be Fail or Ignore", name, *fp))
		}
	}
	return errors.Join(errs...)
}

// Configurations builds the MutatingWebhookConfiguration and the
// ValidatingWebhookConfiguration, both named ConfigurationName, that send
// Deployments and DeploymentPolicies to Sluice. caBundle is left empty: the
// certs Rotator injects it.
func Configurations(o ConfigOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, fmt.Errorf("webhook configuration options: %w", err)
	}
	timeout := o.TimeoutSeconds
	if timeout == 0 {
		timeout = DefaultTimeoutSeconds
	}
	mutatingFP := ptr.Deref(o.MutatingFailurePolicy, admissionregistrationv1.Fail)
	validatingFP := ptr.Deref(o.ValidatingFailurePolicy, admissionregistrationv1.Fail)
	excluded := append([]string(nil), ProtectedNamespaces...)
	if o.OwnNamespace != "" {
		excluded = append(excluded, o.OwnNamespace)
	}
	nsSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: excluded,
	}}}
	deployments := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"},
			Scope: ptr.To(admissionregistrationv1.NamespacedScope),
		},
	}}
	policyRules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{v1alpha1.GroupName}, APIVersions: []string{"v1alpha1"}, Resources: []string{"deploymentpolicies"},
			Scope: ptr.To(admissionregistrationv1.ClusterScope),
		},
	}}
	versions := []string{"v1"}

	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: ConfigurationName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    WebhookMutateDeployment,
			ClientConfig:            o.clientConfig(PathMutateDeployment),
			Rules:                   deployments,
			FailurePolicy:           ptr.To(mutatingFP),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector:       nsSelector.DeepCopy(),
			ObjectSelector:          &metav1.LabelSelector{},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To(timeout),
			AdmissionReviewVersions: versions,
			// Another mutating webhook that changes the pod template after
			// Sluice would leave a stale revision label: run again then.
			ReinvocationPolicy: ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
		}},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: ConfigurationName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:              WebhookValidateDeployment,
			ClientConfig:      o.clientConfig(PathValidateDeployment),
			Rules:             deployments,
			FailurePolicy:     ptr.To(validatingFP),
			MatchPolicy:       ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector: nsSelector.DeepCopy(),
			ObjectSelector:    &metav1.LabelSelector{},
			// Audit Events and violation counts are side effects; they are
			// skipped on dry-run requests, which is what NoneOnDryRun
			// promises (kubectl diff and --dry-run=server keep working).
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(timeout),
			AdmissionReviewVersions: versions,
		}, {
			Name:                    WebhookValidateDeploymentPolicy,
			ClientConfig:            o.clientConfig(PathValidateDeploymentPolicy),
			Rules:                   policyRules,
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector:       &metav1.LabelSelector{},
			ObjectSelector:          &metav1.LabelSelector{},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To(timeout),
			AdmissionReviewVersions: versions,
		}},
	}
	return mutating, validating, nil
}

// clientConfig points a webhook at path.
func (o ConfigOptions) clientConfig(path string) admissionregistrationv1.WebhookClientConfig {
	if o.URL != "" {
		return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(strings.TrimSuffix(o.URL, "/") + path)}
	}
	port := o.ServicePort
	if port == 0 {
		port = 443
	}
	return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: o.ServiceNamespace,
		Name:      o.ServiceName,
		Path:      ptr.To(path),
		Port:      ptr.To(port),
	}}
}
