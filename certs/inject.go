package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// inject sets caBundle on every webhook of every named configuration. It
// tries all configurations and joins the errors, so one missing
// configuration does not starve the others.
func (r *Rotator) inject(ctx context.Context, caBundle []byte) error {
	var errs []error
	for _, name := range r.opts.MutatingWebhooks {
		errs = append(errs, r.injectMutating(ctx, name, caBundle))
	}
	for _, name := range r.opts.ValidatingWebhooks {
		errs = append(errs, r.injectValidating(ctx, name, caBundle))
	}
	return errors.Join(errs...)
}

func (r *Rotator) injectMutating(ctx context.Context, name string, caBundle []byte) error {
	api := r.cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	return injectInto(ctx, "mutating", name, caBundle,
		func() (*admissionv1.MutatingWebhookConfiguration, error) {
			return api.Get(ctx, name, metav1.GetOptions{})
		},
		func(cfg *admissionv1.MutatingWebhookConfiguration) []*admissionv1.WebhookClientConfig {
			ccs := make([]*admissionv1.WebhookClientConfig, len(cfg.Webhooks))
			for i := range cfg.Webhooks {
				ccs[i] = &cfg.Webhooks[i].ClientConfig
			}
			return ccs
		},
		func(cfg *admissionv1.MutatingWebhookConfiguration) error {
			_, err := api.Update(ctx, cfg, metav1.UpdateOptions{})
			return err
		})
}

func (r *Rotator) injectValidating(ctx context.Context, name string, caBundle []byte) error {
	api := r.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	return injectInto(ctx, "validating", name, caBundle,
		func() (*admissionv1.ValidatingWebhookConfiguration, error) {
			return api.Get(ctx, name, metav1.GetOptions{})
		},
		func(cfg *admissionv1.ValidatingWebhookConfiguration) []*admissionv1.WebhookClientConfig {
			ccs := make([]*admissionv1.WebhookClientConfig, len(cfg.Webhooks))
			for i := range cfg.Webhooks {
				ccs[i] = &cfg.Webhooks[i].ClientConfig
			}
			return ccs
		},
		func(cfg *admissionv1.ValidatingWebhookConfiguration) error {
			_, err := api.Update(ctx, cfg, metav1.UpdateOptions{})
			return err
		})
}

// injectInto reads one webhook configuration of either kind, sets caBundle
// on every client config it holds, and writes it back only if one changed.
// The read object is never modified: it may be a cache's.
func injectInto[T interface{ DeepCopy() T }](ctx context.Context, kind, name string, caBundle []byte,
	get func() (T, error), clientConfigs func(T) []*admissionv1.WebhookClientConfig, update func(T) error) error {
	cfg, err := get()
	if err != nil {
		return injectError(kind, name, err)
	}
	cfg = cfg.DeepCopy()
	changed := 0
	for _, cc := range clientConfigs(cfg) {
		changed += setCABundle(cc, caBundle)
	}
	if changed == 0 {
		return nil
	}
	if err := update(cfg); err != nil {
		return injectError(kind, name, err)
	}
	logr.FromContextOrDiscard(ctx).Info("injected caBundle", kind+"WebhookConfiguration", name, "webhooks", changed)
	return nil
}

// setCABundle sets cc.CABundle and returns 1 if it differed, else 0.
func setCABundle(cc *admissionv1.WebhookClientConfig, caBundle []byte) int {
	if bytes.Equal(cc.CABundle, caBundle) {
		return 0
	}
	cc.CABundle = bytes.Clone(caBundle)
	return 1
}

// injectError wraps a failure to read or update a webhook configuration,
// saying what to do when it does not exist.
func injectError(kind, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("inject caBundle: %s webhook configuration %q does not exist yet (install it, or fix the configured name): %w", kind, name, err)
	}
	return fmt.Errorf("inject caBundle into %s webhook configuration %q: %w", kind, name, err)
}
