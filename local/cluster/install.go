package cluster

import (
	"context"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Install puts what a Sluice controller needs into the cluster: its
// namespace, the CRDs (waiting until they are served), and the given webhook
// configurations (created or replaced; the controller injects their CA
// bundle).
func (c *Cluster) Install(ctx context.Context, namespace string, mutating *admissionregistrationv1.MutatingWebhookConfiguration, validating *admissionregistrationv1.ValidatingWebhookConfiguration) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	if err := c.InstallCRDs(ctx); err != nil {
		return err
	}
	if mutating != nil {
		api := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
		if err := api.Delete(ctx, mutating.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replace mutating webhook configuration: %w", err)
		}
		if _, err := api.Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create mutating webhook configuration: %w", err)
		}
	}
	if validating != nil {
		api := c.client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
		if err := api.Delete(ctx, validating.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replace validating webhook configuration: %w", err)
		}
		if _, err := api.Create(ctx, validating, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create validating webhook configuration: %w", err)
		}
	}
	return nil
}

// InstallCRDs creates or updates Sluice's CRDs and waits until they are
// established.
func (c *Cluster) InstallCRDs(ctx context.Context) error {
	crds, err := v1alpha1.CRDs()
	if err != nil {
		return fmt.Errorf("load CRDs: %w", err)
	}
	ext, err := apiextensionsclient.NewForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("create apiextensions client: %w", err)
	}
	api := ext.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range crds {
		cur, err := api.Get(ctx, crd.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, crd, metav1.CreateOptions{})
		case err == nil:
			crd.ResourceVersion = cur.ResourceVersion
			_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.Name, err)
		}
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, crd := range crds {
		name := crd.Name
		if err := WaitFor(wait, "CRD "+name+" established", c.procs, func(ctx context.Context) (bool, error) {
			cur, err := api.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range cur.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return err
		}
	}
	return nil
}
