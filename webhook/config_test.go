package webhook

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/utils/ptr"
)

func TestConfigurationsByURL(t *testing.T) {
	m, v, err := Configurations(ConfigOptions{URL: "https://127.0.0.1:9443/", OwnNamespace: "sluice-system"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != ConfigurationName || v.Name != ConfigurationName {
		t.Errorf("names %q %q, want %q", m.Name, v.Name, ConfigurationName)
	}
	mw := m.Webhooks[0]
	if got := *mw.ClientConfig.URL; got != "https://127.0.0.1:9443"+PathMutateDeployment {
		t.Errorf("mutating URL %q", got)
	}
	if len(mw.ClientConfig.CABundle) != 0 {
		t.Error("caBundle set; the certs Rotator injects it")
	}
	if *mw.FailurePolicy != admissionregistrationv1.Fail || *mw.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		*mw.TimeoutSeconds != DefaultTimeoutSeconds || *mw.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("mutating webhook %+v", mw)
	}
	wantExcluded := []string{"kube-system", "kube-public", "kube-node-lease", "sluice-system"}
	for _, sel := range []*admissionregistrationv1.MutatingWebhook{&mw} {
		req := sel.NamespaceSelector.MatchExpressions[0]
		if req.Key != "kubernetes.io/metadata.name" || req.Operator != "NotIn" || !cmp.Equal(req.Values, wantExcluded) {
			t.Errorf("namespaceSelector %+v", sel.NamespaceSelector)
		}
	}
	if len(v.Webhooks) != 2 {
		t.Fatalf("%d validating webhooks, want 2", len(v.Webhooks))
	}
	vd, vp := v.Webhooks[0], v.Webhooks[1]
	if *vd.ClientConfig.URL != "https://127.0.0.1:9443"+PathValidateDeployment || *vp.ClientConfig.URL != "https://127.0.0.1:9443"+PathValidateDeploymentPolicy {
		t.Errorf("validating URLs %q %q", *vd.ClientConfig.URL, *vp.ClientConfig.URL)
	}
	if !cmp.Equal(vd.NamespaceSelector.MatchExpressions[0].Values, wantExcluded) {
		t.Errorf("validating namespaceSelector %+v", vd.NamespaceSelector)
	}
	if *vd.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
		t.Errorf("deployment validating sideEffects %s", *vd.SideEffects)
	}
	if vp.Rules[0].APIGroups[0] != "sluice.dev" || vp.Rules[0].Resources[0] != "deploymentpolicies" {
		t.Errorf("policy rules %+v", vp.Rules)
	}
	for _, w := range append([]admissionregistrationv1.ValidatingWebhook{}, v.Webhooks...) {
		if !cmp.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
			t.Errorf("%s admissionReviewVersions %v", w.Name, w.AdmissionReviewVersions)
		}
	}
}

func TestConfigurationsByService(t *testing.T) {
	m, v, err := Configurations(ConfigOptions{
		ServiceNamespace: "sluice-system", ServiceName: "sluice-webhook", TimeoutSeconds: 3,
		ValidatingFailurePolicy: ptr.To(admissionregistrationv1.Ignore),
	})
	if err != nil {
		t.Fatal(err)
	}
	svc := m.Webhooks[0].ClientConfig.Service
	if svc == nil || svc.Name != "sluice-webhook" || svc.Namespace != "sluice-system" || *svc.Port != 443 || *svc.Path != PathMutateDeployment {
		t.Errorf("service %+v", svc)
	}
	if m.Webhooks[0].ClientConfig.URL != nil {
		t.Error("URL set with a service")
	}
	if *v.Webhooks[0].FailurePolicy != admissionregistrationv1.Ignore || *v.Webhooks[0].TimeoutSeconds != 3 {
		t.Errorf("validating %+v", v.Webhooks[0])
	}
	// The policy webhook always fails closed: an unchecked policy could
	// not compile and would then not be applied at all.
	if *v.Webhooks[1].FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("policy webhook failurePolicy %s", *v.Webhooks[1].FailurePolicy)
	}
	if ex := m.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values; len(ex) != 3 {
		t.Errorf("excluded %v, want only the protected namespaces", ex)
	}
}

func TestConfigurationsRejectBadOptions(t *testing.T) {
	tests := map[string]struct {
		o    ConfigOptions
		want string
	}{
		"nothing":        {ConfigOptions{}, "either URL"},
		"both":           {ConfigOptions{URL: "https://x", ServiceName: "s", ServiceNamespace: "n"}, "only one"},
		"http":           {ConfigOptions{URL: "http://127.0.0.1:9443"}, "https://"},
		"query":          {ConfigOptions{URL: "https://127.0.0.1:9443?x=1"}, "without user, query"},
		"service no ns":  {ConfigOptions{ServiceName: "s"}, "ServiceNamespace"},
		"timeout":        {ConfigOptions{URL: "https://h", TimeoutSeconds: 31}, "between 1 and 30"},
		"port":           {ConfigOptions{ServiceName: "s", ServiceNamespace: "n", ServicePort: 70000}, "port"},
		"failure policy": {ConfigOptions{URL: "https://h", MutatingFailurePolicy: ptr.To(admissionregistrationv1.FailurePolicyType("Maybe"))}, "Fail or Ignore"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := Configurations(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
