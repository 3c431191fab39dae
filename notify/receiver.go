package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Secret keys of a namespace's receiver.
const (
	// SecretKeyURL holds the receiver's URL.
	SecretKeyURL = "url"
	// SecretKeyFormat holds "json" (default) or "slack".
	SecretKeyFormat = "format"
)

// errNotAllowed: the receiver URL starts with no allowed prefix. The error
// never contains the URL, which is a secret.
var errNotAllowed = errors.New("the receiver URL in the namespace's Secret starts with none of the prefixes its DeploymentPolicies allow")

// receivers finds a namespace's receiver: the policies that select the
// namespace allow URL prefixes and name the Secret; the Secret is read by
// name (no list, no watch), so Sluice's access to Secrets can be one
// Secret per namespace.
type receivers struct {
	// cached reads Namespaces and DeploymentPolicies.
	cached client.Reader
	// secrets reads one Secret directly from the API server.
	secrets client.Reader
}

// receiver returns the namespace's receiver; ok is false when no policy
// enables notifications there or the namespace has no Secret.
func (r receivers) receiver(ctx context.Context, namespace string) (rec Receiver, ok bool, err error) {
	var ns corev1.Namespace
	if err := r.cached.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return Receiver{}, false, fmt.Errorf("get namespace: %w", err)
	}
	var policies v1alpha1.DeploymentPolicyList
	if err := r.cached.List(ctx, &policies); err != nil {
		return Receiver{}, false, fmt.Errorf("list policies: %w", err)
	}
	sort.Slice(policies.Items, func(i, j int) bool { return policies.Items[i].Name < policies.Items[j].Name })
	var prefixes []string
	secret := ""
	for _, p := range policies.Items {
		n := p.Spec.Notifications
		if n == nil || !selects(p.Spec.NamespaceSelector, ns.Labels) {
			continue
		}
		prefixes = append(prefixes, n.AllowedURLPrefixes...)
		if secret == "" {
			secret = n.SecretName
		}
	}
	if len(prefixes) == 0 {
		return Receiver{}, false, nil
	}
	if secret == "" {
		secret = v1alpha1.NotificationSecretDefault
	}
	var s corev1.Secret
	switch err := r.secrets.Get(ctx, types.NamespacedName{Namespace: namespace, Name: secret}, &s); {
	case apierrors.IsNotFound(err):
		return Receiver{}, false, nil
	case err != nil:
		return Receiver{}, false, fmt.Errorf("get Secret %s: %w", secret, err)
	}
	rec = Receiver{URL: strings.TrimSpace(string(s.Data[SecretKeyURL])), Format: Format(strings.TrimSpace(string(s.Data[SecretKeyFormat])))}
	if err := allowed(rec.URL, prefixes); err != nil {
		return Receiver{}, false, fmt.Errorf("Secret %s: %w", secret, err)
	}
	if rec.Format != "" && rec.Format != FormatJSON && rec.Format != FormatSlack {
		return Receiver{}, false, fmt.Errorf("Secret %s: format %q: want json or slack", secret, rec.Format)
	}
	return rec, true, nil
}

// selects says whether a policy's namespace selector picks labels; absent
// or empty selects every namespace.
func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false // the policy does not compile; admission reports it
	}
	return s.Matches(labels.Set(l))
}

// allowed checks that raw is an absolute http(s) URL starting with one of
// prefixes.
func allowed(raw string, prefixes []string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("the receiver URL is not an absolute http or https URL")
	}
	for _, p := range prefixes {
		if strings.HasPrefix(raw, p) {
			return nil
		}
	}
	return errNotAllowed
}
