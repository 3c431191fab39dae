package e2e

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/sluice-dev/sluice/webhook"
)

// webhookConfigurations are the webhook configurations registered by URL
// for the controller under test, exactly as `sluice dev` registers them.
func webhookConfigurations(base string) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	return webhook.Configurations(webhook.ConfigOptions{URL: base, OwnNamespace: sluiceNamespace})
}
