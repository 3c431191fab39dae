package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"golang.org/x/sync/singleflight"
)

// Token verification defaults.
const (
	// DefaultAudience is the audience a client's token must be minted for.
	DefaultAudience = "sluice"
	// DefaultTokenCacheTTL bounds how long a verdict is reused, even for a
	// token that expires later: a deleted ServiceAccount stops connecting
	// within this time.
	DefaultTokenCacheTTL = 10 * time.Minute
	// DefaultTokenCacheSize bounds the number of cached verdicts.
	DefaultTokenCacheSize = 4096
	// refusedTTL is how long a refused token's verdict is reused, so that a
	// client retrying a bad token costs one TokenReview per period.
	refusedTTL = 10 * time.Second
	// reviewTimeout bounds one TokenReview call, including the wait for
	// a slot.
	reviewTimeout = 10 * time.Second
	// maxConcurrentReviews bounds the TokenReview calls in flight, so a
	// flood of distinct bad tokens queues here instead of at the API
	// server.
	maxConcurrentReviews = 32
)

// ErrUnauthenticated wraps every reason a token or certificate is refused.
var ErrUnauthenticated = errors.New("unauthenticated")

// TokenOptions configure a [TokenVerifier].
type TokenOptions struct {
	// Reviews creates TokenReviews. Required.
	Reviews authnclient.TokenReviewInterface
	// Audience the token must be minted for. Default [DefaultAudience].
	Audience string
	// TTL bounds how long a verdict is reused. Default
	// [DefaultTokenCacheTTL].
	TTL time.Duration
	// Size bounds the number of cached verdicts. Default
	// [DefaultTokenCacheSize].
	Size int
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// OnReview, when set, is called after every TokenReview call (for
	// metrics and benchmarks).
	OnReview func(err error)
}

// TokenVerifier turns a projected ServiceAccount token into an [Identity]
// with the TokenReview API. Verdicts are cached by the token's hash until
// the token expires (its "exp" claim) or the TTL passes, whichever is
// first, in a bounded LRU; concurrent verifications of one token share one
// TokenReview, so a reconnect storm of many streams carrying the same token
// costs one call.
type TokenVerifier struct {
	opts   TokenOptions
	cache  *cache.LRUExpireCache
	flight singleflight.Group
	slots  chan struct{}
}

// verdict is a cached outcome of a TokenReview.
type verdict struct {
	id  Identity
	err error
}

// NewTokenVerifier validates opts and returns a verifier.
func NewTokenVerifier(opts TokenOptions) (*TokenVerifier, error) {
	if opts.Reviews == nil {
		return nil, errors.New("token verifier: a TokenReview client is required")
	}
	if opts.TTL < 0 || opts.Size < 0 {
		return nil, fmt.Errorf("token verifier: TTL %s and size %d must not be negative", opts.TTL, opts.Size)
	}
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTokenCacheTTL
	}
	if opts.Size == 0 {
		opts.Size = DefaultTokenCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &TokenVerifier{opts: opts, cache: cache.NewLRUExpireCache(opts.Size), slots: make(chan struct{}, maxConcurrentReviews)}, nil
}

// Audience is the audience tokens must be minted for.
func (v *TokenVerifier) Audience() string { return v.opts.Audience }

// Verify returns the ServiceAccount identity token proves, or an error
// wrapping [ErrUnauthenticated] saying why not. Errors reaching the API
// server are returned as they are (not cached), so that a client can tell
// a refusal from an outage.
func (v *TokenVerifier) Verify(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: empty bearer token", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	if c, ok := v.cache.Get(key); ok {
		vd := c.(verdict)
		return vd.id, vd.err
	}
	res, err, _ := v.flight.Do(key, func() (any, error) {
		// A review of the same token may have finished between the
		// lookup above and joining the flight.
		if c, ok := v.cache.Get(key); ok {
			return c, nil
		}
		// The review outlives a caller that gives up: others may be
		// waiting for the same verdict.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reviewTimeout)
		defer cancel()
		select {
		case v.slots <- struct{}{}:
			defer func() { <-v.slots }()
		case <-rctx.Done():
			return nil, fmt.Errorf("token review: too many reviews in flight: %w", rctx.Err())
		}
		vd, err := v.review(rctx, token)
		if v.opts.OnReview != nil {
			v.opts.OnReview(err)
		}
		if err != nil {
			return nil, err
		}
		ttl := refusedTTL
		if vd.err == nil {
			ttl = v.opts.TTL
		}
		if exp, ok := jwtExpiry(token); ok {
			ttl = min(ttl, exp.Sub(v.opts.Now()))
		}
		if ttl > 0 {
			v.cache.Add(key, vd, ttl)
		}
		return vd, nil
	})
	if err != nil {
		return Identity{}, err
	}
	vd := res.(verdict)
	return vd.id, vd.err
}

// review asks the API server about token. A refusal is a verdict; only a
// failed call is an error.
func (v *TokenVerifier) review(ctx context.Context, token string) (verdict, error) {
	tr, err := v.opts.Reviews.Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{v.opts.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return verdict{}, fmt.Errorf("token review: %w", err)
	}
	st := tr.Status
	switch {
	case !st.Authenticated:
		reason := "the API server did not authenticate the token"
		if st.Error != "" {
			reason += ": " + truncate(st.Error, 200)
		}
		return verdict{err: fmt.Errorf("%w: %s (a projected ServiceAccount token for audience %q is required)", ErrUnauthenticated, reason, v.opts.Audience)}, nil
	case !slices.Contains(st.Audiences, v.opts.Audience):
		return verdict{err: fmt.Errorf("%w: the token is not for audience %q", ErrUnauthenticated, v.opts.Audience)}, nil
	}
	id, err := ServiceAccountIdentity(st.User.Username, MethodToken)
	if err != nil {
		return verdict{err: err}, nil
	}
	return verdict{id: id}, nil
}

// ServiceAccountIdentity maps a user name of the form
// system:serviceaccount:<namespace>:<name> to an identity proven by m.
// Any other user is refused: only ServiceAccounts run proxies.
func ServiceAccountIdentity(user string, m Method) (Identity, error) {
	ns, name, err := serviceaccount.SplitUsername(user)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %q is not a ServiceAccount (want %s)", ErrUnauthenticated, truncate(user, 100), serviceaccount.MakeUsername("<namespace>", "<name>"))
	}
	return Identity{Method: m, Namespace: ns, Name: name}, nil
}

// jwtExpiry reads the "exp" claim of a JWT without verifying it: it only
// bounds how long a verdict of the API server is reused.
func jwtExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil || claims.Exp <= 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}

// truncate shortens s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
