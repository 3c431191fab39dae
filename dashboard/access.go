package dashboard

import (
	"context"
	"fmt"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Access says whether the person looking may see a namespace: whether they
// may get Rollouts there.
type Access interface {
	Allowed(ctx context.Context, namespace string) (bool, error)
}

// AccessFunc adapts a function to Access.
type AccessFunc func(ctx context.Context, namespace string) (bool, error)

// Allowed calls f.
func (f AccessFunc) Allowed(ctx context.Context, namespace string) (bool, error) {
	return f(ctx, namespace)
}

var _ Access = AccessFunc(nil)

// accessTTL is how long an answer of the API server is reused.
const accessTTL = 10 * time.Second

// SelfAccess asks the API server, with the client's own credentials
// (SelfSubjectAccessReview), whether it may get Rollouts in a namespace.
// Answers are kept for a few seconds.
type SelfAccess struct {
	client client.Client
	mu     sync.Mutex
	cache  map[string]verdict
}

type verdict struct {
	allowed bool
	at      time.Time
}

// NewSelfAccess returns a SelfAccess asking through c.
func NewSelfAccess(c client.Client) *SelfAccess {
	return &SelfAccess{client: c, cache: map[string]verdict{}}
}

var _ Access = (*SelfAccess)(nil)

// Allowed reports whether the client may get Rollouts in namespace.
func (a *SelfAccess) Allowed(ctx context.Context, namespace string) (bool, error) {
	now := time.Now()
	a.mu.Lock()
	v, ok := a.cache[namespace]
	a.mu.Unlock()
	if ok && now.Sub(v.at) < accessTTL {
		return v.allowed, nil
	}
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: rolloutsAttributes(namespace),
	}}
	if err := a.client.Create(ctx, review); err != nil {
		return false, fmt.Errorf("self subject access review: %w", err)
	}
	a.mu.Lock()
	a.cache[namespace] = verdict{allowed: review.Status.Allowed, at: now}
	a.mu.Unlock()
	return review.Status.Allowed, nil
}

// rolloutsAttributes is "get rollouts.sluice.dev in namespace".
func rolloutsAttributes(namespace string) *authorizationv1.ResourceAttributes {
	return &authorizationv1.ResourceAttributes{
		Namespace: namespace,
		Verb:      "get",
		Group:     v1alpha1.GroupName,
		Resource:  "rollouts",
	}
}
