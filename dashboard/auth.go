package dashboard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Authenticator says who makes a request and returns what they may see.
// It returns ErrUnauthenticated when the request proves no identity.
type Authenticator interface {
	Authenticate(r *http.Request) (Access, error)
}

// ErrUnauthenticated: the request carries no valid credentials (401).
var ErrUnauthenticated = errors.New("unauthenticated")

// tokenTTL is how long a TokenReview's answer is reused.
const tokenTTL = time.Minute

// maxCachedTokens bounds the TokenReview cache.
const maxCachedTokens = 1000

// TokenAuth authenticates a request's bearer token with a TokenReview and
// authorizes each namespace with a SubjectAccessReview for that user: the
// way a dashboard served by the controller, which reads with its own
// rights, shows each person only what they may get.
type TokenAuth struct {
	client    client.Client
	audiences []string

	mu    sync.Mutex
	users map[[sha256.Size]byte]reviewedUser
}

type reviewedUser struct {
	user   authenticationv1.UserInfo
	access *SubjectAccess
	at     time.Time
}

// NewTokenAuth returns a TokenAuth reviewing through c (which needs to
// create TokenReviews and SubjectAccessReviews). Empty audiences accept the
// API server's own.
func NewTokenAuth(c client.Client, audiences []string) *TokenAuth {
	return &TokenAuth{client: c, audiences: audiences, users: map[[sha256.Size]byte]reviewedUser{}}
}

var _ Authenticator = (*TokenAuth)(nil)

// Authenticate reviews the request's bearer token.
func (a *TokenAuth) Authenticate(r *http.Request) (Access, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		return nil, ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	a.mu.Lock()
	u, ok := a.users[key]
	a.mu.Unlock()
	if ok && now.Sub(u.at) < tokenTTL {
		return u.access, nil
	}
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.audiences}}
	if err := a.client.Create(r.Context(), review); err != nil {
		return nil, fmt.Errorf("token review: %w", err)
	}
	if !review.Status.Authenticated {
		return nil, ErrUnauthenticated
	}
	u = reviewedUser{user: review.Status.User, access: NewSubjectAccess(a.client, review.Status.User), at: now}
	a.mu.Lock()
	if len(a.users) >= maxCachedTokens {
		for k, v := range a.users {
			if now.Sub(v.at) >= tokenTTL || len(a.users) >= maxCachedTokens {
				delete(a.users, k)
			}
		}
	}
	a.users[key] = u
	a.mu.Unlock()
	return u.access, nil
}

// SubjectAccess asks the API server (SubjectAccessReview) whether a user
// may get Rollouts in a namespace. Answers are kept for a few seconds.
type SubjectAccess struct {
	client client.Client
	user   authenticationv1.UserInfo
	cache  verdicts
}

// NewSubjectAccess returns the Access of user, asked through c.
func NewSubjectAccess(c client.Client, user authenticationv1.UserInfo) *SubjectAccess {
	return &SubjectAccess{client: c, user: user, cache: verdicts{m: map[string]verdict{}}}
}

var _ Access = (*SubjectAccess)(nil)

// AllowedEverywhere reports whether the user may get Rollouts in every
// namespace.
func (a *SubjectAccess) AllowedEverywhere(ctx context.Context) (bool, error) {
	return a.Allowed(ctx, allNamespacesKey)
}

var _ allNamespaces = (*SubjectAccess)(nil)

// Allowed reports whether the user may get Rollouts in namespace.
func (a *SubjectAccess) Allowed(ctx context.Context, namespace string) (bool, error) {
	return a.cache.get(namespace, func() (bool, error) {
		extra := map[string]authorizationv1.ExtraValue{}
		for k, v := range a.user.Extra {
			extra[k] = authorizationv1.ExtraValue(v)
		}
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			ResourceAttributes: rolloutsAttributes(namespace),
			User:               a.user.Username, Groups: a.user.Groups, UID: a.user.UID, Extra: extra,
		}}
		if err := a.client.Create(ctx, review); err != nil {
			return false, fmt.Errorf("subject access review: %w", err)
		}
		return review.Status.Allowed, nil
	})
}
