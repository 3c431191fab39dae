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

// allNamespaces is an Access that can tell in one question whether the
// person may get Rollouts in every namespace (a cluster-wide grant), so a
// page need not ask about each namespace in turn.
type allNamespaces interface {
	AllowedEverywhere(ctx context.Context) (bool, error)
}

// accessTTL is how long an answer of the API server is reused.
const accessTTL = 10 * time.Second

// SelfAccess asks the API server, with the client's own credentials
// (SelfSubjectAccessReview), whether it may get Rollouts in a namespace.
// Answers are kept for a few seconds.
type SelfAccess struct {
	client client.Client
	cache  verdicts
}

// NewSelfAccess returns a SelfAccess asking through c.
func NewSelfAccess(c client.Client) *SelfAccess {
	return &SelfAccess{client: c, cache: verdicts{m: map[string]verdict{}}}
}

var _ Access = (*SelfAccess)(nil)

// Allowed reports whether the client may get Rollouts in namespace.
func (a *SelfAccess) Allowed(ctx context.Context, namespace string) (bool, error) {
	return a.cache.get(namespace, func() (bool, error) {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: rolloutsAttributes(namespace),
		}}
		if err := a.client.Create(ctx, review); err != nil {
			return false, fmt.Errorf("self subject access review: %w", err)
		}
		return review.Status.Allowed, nil
	})
}

// AllowedEverywhere reports whether the client may get Rollouts in every
// namespace.
func (a *SelfAccess) AllowedEverywhere(ctx context.Context) (bool, error) {
	return a.Allowed(ctx, allNamespacesKey)
}

var _ allNamespaces = (*SelfAccess)(nil)

// allNamespacesKey asks about every namespace: a review's empty namespace
// means all of them (namespace names are never empty).
const allNamespacesKey = ""

// verdicts keeps access answers by namespace for accessTTL.
type verdicts struct {
	mu sync.Mutex
	m  map[string]verdict
}

type verdict struct {
	allowed bool
	at      time.Time
}

// get returns the kept answer for namespace, or asks.
func (v *verdicts) get(namespace string, ask func() (bool, error)) (bool, error) {
	now := time.Now()
	v.mu.Lock()
	old, ok := v.m[namespace]
	v.mu.Unlock()
	if ok && now.Sub(old.at) < accessTTL {
		return old.allowed, nil
	}
	allowed, err := ask()
	if err != nil {
		return false, err
	}
	v.mu.Lock()
	v.m[namespace] = verdict{allowed: allowed, at: now}
	v.mu.Unlock()
	return allowed, nil
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
