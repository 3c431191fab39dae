package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ServiceAccountToken mints a token of ServiceAccount namespace/name for
// audience with the TokenRequest API, valid for ttl (at least 10 minutes:
// the API server's floor), creating the ServiceAccount if it is missing
// (the namespace must exist). It returns the token and when it expires.
func ServiceAccountToken(ctx context.Context, cs kubernetes.Interface, namespace, name, audience string, ttl time.Duration) (string, time.Time, error) {
	sas := cs.CoreV1().ServiceAccounts(namespace)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := sas.Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", time.Time{}, fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	secs := int64(ttl / time.Second)
	tr, err := sas.CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences:         []string{audience},
		ExpirationSeconds: &secs,
	}}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("request a token of %s/%s for audience %q: %w", namespace, name, audience, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// TokenFile keeps a ServiceAccount token in a file, as kubelet keeps a
// projected token: written once by Write, rewritten by Refresh before it
// expires. grpc-go's jwt_token_file call credentials re-read it.
type TokenFile struct {
	Client    kubernetes.Interface
	Path      string
	Namespace string
	Name      string
	Audience  string
	// TTL of each token; default one hour.
	TTL time.Duration
}

// Write mints a token and writes it (atomically), returning its expiry.
func (f TokenFile) Write(ctx context.Context) (time.Time, error) {
	ttl := f.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	token, exp, err := ServiceAccountToken(ctx, f.Client, f.Namespace, f.Name, f.Audience, ttl)
	if err != nil {
		return time.Time{}, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".token-*")
	if err != nil {
		return time.Time{}, fmt.Errorf("write token file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(token); err != nil {
		tmp.Close()
		return time.Time{}, fmt.Errorf("write token file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return time.Time{}, fmt.Errorf("write token file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return time.Time{}, fmt.Errorf("write token file: %w", err)
	}
	return exp, nil
}

// Refresh rewrites the token when two thirds of its remaining lifetime
// have passed (retrying every 10 s on failure) until ctx ends; exp is the
// expiry of the token written last.
func (f TokenFile) Refresh(ctx context.Context, exp time.Time, log logr.Logger) {
	for {
		wait := max(time.Until(exp)*2/3, 0)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		next, err := f.Write(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error(err, "cannot refresh the xDS client token; retrying in 10s", "file", f.Path)
			exp = time.Now().Add(15 * time.Second) // two thirds of it: 10 s
			continue
		}
		exp = next
	}
}

// EnsureNamespace creates namespace name with labels unless it exists (an
// existing one is left as it is).
func EnsureNamespace(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}
