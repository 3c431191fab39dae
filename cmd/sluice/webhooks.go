package main

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/sluice-dev/sluice/webhook"
)

// localWebhookConfigurations registers the webhooks by URL on loopback, as
// the local cluster needs.
func localWebhookConfigurations(base, namespace string) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	return webhook.Configurations(webhook.ConfigOptions{URL: base, OwnNamespace: namespace})
}
