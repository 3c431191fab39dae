package certs

import (
	"context"
	"fmt"
	"maps"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ManagedByLabel is set on a Secret the Rotator creates, so operators can
// tell it from one written by cert-manager.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// ensureSecret reads the Secret and, when it is missing or no longer fit,
// writes the bundle [Issue] returns. It returns the bundle now stored.
func (r *Rotator) ensureSecret(ctx context.Context) (*Bundle, error) {
	log := logr.FromContextOrDiscard(ctx)
	secrets := r.cs.CoreV1().Secrets(r.opts.Namespace)
	now := r.opts.Now()

	sec, err := secrets.Get(ctx, r.opts.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		b, err := Issue(r.req, now)
		if err != nil {
			return nil, err
		}
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      r.opts.SecretName,
				Namespace: r.opts.Namespace,
				Labels:    map[string]string{ManagedByLabel: "sluice"},
			},
			Type: corev1.SecretTypeTLS,
			Data: b.SecretData(),
		}
		if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create secret %s/%s: %w", r.opts.Namespace, r.opts.SecretName, err)
		}
		log.Info("created certificate secret", "expiry", expiryOf(b.Cert))
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s/%s: %w", r.opts.Namespace, r.opts.SecretName, err)
	}

	req := r.req
	req.Existing = BundleFromSecretData(sec.Data)
	a, err := Assess(req, now)
	if err != nil {
		return nil, err
	}
	if a.OK() {
		return req.Existing, nil
	}
	b, err := Issue(req, now)
	if err != nil {
		return nil, err
	}
	updated := sec.DeepCopy()
	if updated.Data == nil {
		updated.Data = map[string][]byte{}
	}
	// Keys other than the bundle's are left alone.
	maps.Copy(updated.Data, b.SecretData())
	if _, err := secrets.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("update secret %s/%s: %w", r.opts.Namespace, r.opts.SecretName, err)
	}
	log.Info("rotated certificates", "caReason", a.CA, "trustReason", a.Trust, "servingReason", a.Serving, "expiry", expiryOf(b.Cert))
	return b, nil
}

// expiryOf returns the NotAfter of the first certificate in certPEM as
// RFC 3339, or the parse error, for logs.
func expiryOf(certPEM []byte) string {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return "unparsable: " + err.Error()
	}
	return certs[0].NotAfter.UTC().Format("2006-01-02T15:04:05Z")
}
