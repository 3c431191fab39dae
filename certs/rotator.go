package certs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultCheckInterval is how often a [Rotator] re-checks the Secret and the
// webhook configurations when no watch event arrives.
const DefaultCheckInterval = time.Minute

// RotatorOptions configure a [Rotator].
type RotatorOptions struct {
	// Namespace and SecretName locate the certificate Secret. Required.
	Namespace  string
	SecretName string
	// DNSNames and IPAddresses the serving certificate must carry, e.g.
	// "sluice-webhook.<ns>.svc" and "sluice-webhook.<ns>.svc.cluster.local"
	// in a cluster, or 127.0.0.1 for webhooks registered by URL on
	// loopback. At least one is required.
	DNSNames    []string
	IPAddresses []net.IP
	// MutatingWebhooks and ValidatingWebhooks name the webhook
	// configurations whose every webhook gets the CA bundle. A missing
	// configuration is retried until it appears.
	MutatingWebhooks   []string
	ValidatingWebhooks []string
	// CAName, CAValidity, CertValidity, CALookahead and CertLookahead are
	// passed to [Issue]; zero values take its defaults.
	CAName        string
	CAValidity    time.Duration
	CertValidity  time.Duration
	CALookahead   time.Duration
	CertLookahead time.Duration
	// CheckInterval is the period of the full check that runs even without
	// watch events. Default [DefaultCheckInterval].
	CheckInterval time.Duration
	// Logger receives progress and errors; when unset, the logger of the
	// context passed to Start is used.
	Logger logr.Logger
	// Now returns the current time; default time.Now. Tests move it.
	Now func() time.Time
}

// Rotator keeps the certificate Secret valid and the CA bundle injected into
// the webhook configurations. It is a controller-runtime Runnable that needs
// leader election: only the leader writes, while every replica serves what
// the Secret holds through a [Reloader].
//
// It uses client-go rather than the manager's cached client: the informers
// are scoped to the one Secret (a manager cache would hold every Secret of
// the cluster the first time one is read), and every decision reads the live
// object, so a stale cache can never make it issue twice.
type Rotator struct {
	cs   kubernetes.Interface
	opts RotatorOptions
	req  IssueRequest
}

var (
	_ manager.Runnable               = (*Rotator)(nil)
	_ manager.LeaderElectionRunnable = (*Rotator)(nil)
)

// NewRotator validates opts and returns a Rotator that does nothing until
// Start.
func NewRotator(cs kubernetes.Interface, opts RotatorOptions) (*Rotator, error) {
	var errs []error
	if cs == nil {
		errs = append(errs, errors.New("a Kubernetes client is required"))
	}
	if opts.Namespace == "" || opts.SecretName == "" {
		errs = append(errs, fmt.Errorf("namespace (%q) and secret name (%q) are required", opts.Namespace, opts.SecretName))
	}
	if opts.CheckInterval < 0 {
		errs = append(errs, fmt.Errorf("check interval %s must not be negative", opts.CheckInterval))
	}
	for _, n := range slices.Concat(opts.MutatingWebhooks, opts.ValidatingWebhooks) {
		if n == "" {
			errs = append(errs, errors.New("webhook configuration names must not be empty"))
			break
		}
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.MutatingWebhooks = slices.Clone(opts.MutatingWebhooks)
	opts.ValidatingWebhooks = slices.Clone(opts.ValidatingWebhooks)
	req, err := IssueRequest{
		DNSNames:      opts.DNSNames,
		IPAddresses:   opts.IPAddresses,
		CAName:        opts.CAName,
		CAValidity:    opts.CAValidity,
		CertValidity:  opts.CertValidity,
		CALookahead:   opts.CALookahead,
		CertLookahead: opts.CertLookahead,
	}.withDefaults()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("certificate rotator: %w", err)
	}
	return &Rotator{cs: cs, opts: opts, req: req}, nil
}

// NeedLeaderElection reports true: only the leader issues and injects.
func (r *Rotator) NeedLeaderElection() bool { return true }

// Start runs until ctx ends. It checks at once, then again on every change
// to the Secret or a named webhook configuration and every CheckInterval;
// a failed check is retried with a backoff capped at CheckInterval. It
// returns nil when ctx ends and an error only if it cannot start watching.
func (r *Rotator) Start(ctx context.Context) error {
	log := r.opts.Logger
	if log.GetSink() == nil {
		log = logr.FromContextOrDiscard(ctx)
	}
	log = log.WithValues("secret", r.opts.Namespace+"/"+r.opts.SecretName)
	ctx = logr.NewContext(ctx, log)

	trigger, poke := newTrigger()
	secretInf := secretInformer(r.cs, r.opts.Namespace, r.opts.SecretName)
	if err := onObject(secretInf, r.isSecret, poke); err != nil {
		return fmt.Errorf("watch certificate secret: %w", err)
	}
	infs := []cache.SharedIndexInformer{secretInf}
	if len(r.opts.MutatingWebhooks)+len(r.opts.ValidatingWebhooks) > 0 {
		whInfs := webhookInformers(r.cs)
		names := [][]string{r.opts.MutatingWebhooks, r.opts.ValidatingWebhooks}
		for i, inf := range whInfs {
			match := func(o metav1.Object) bool { return slices.Contains(names[i], o.GetName()) }
			if err := onObject(inf, match, poke); err != nil {
				return fmt.Errorf("watch webhook configurations: %w", err)
			}
		}
		infs = append(infs, whInfs...)
	}
	runInformers(ctx, infs...)

	timer := time.NewTimer(0)
	defer timer.Stop()
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		case <-timer.C:
		}
		next := r.opts.CheckInterval
		if _, err := r.Reconcile(ctx); err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), r.opts.CheckInterval)
			next = backoff
			if onlyConflicts(err) {
				log.V(1).Info("certificate check lost a race, retrying", "reason", err.Error(), "retryIn", next)
			} else {
				log.Error(err, "certificate check failed", "retryIn", next)
			}
		} else {
			backoff = 0
		}
		timer.Reset(next)
	}
}

// isSecret reports whether o is the certificate Secret.
func (r *Rotator) isSecret(o metav1.Object) bool {
	return o.GetNamespace() == r.opts.Namespace && o.GetName() == r.opts.SecretName
}

// Reconcile makes one full pass: it ensures the Secret holds a fit bundle,
// creating or rotating it, then injects the bundle's CA certificates into
// every named webhook configuration. It returns the stored bundle, also
// when only the injection failed (for example because a configuration does
// not exist yet). Start calls it; `sluice dev` may call it once to obtain
// the CA bundle before registering its webhooks.
func (r *Rotator) Reconcile(ctx context.Context) (*Bundle, error) {
	b, err := r.ensureSecret(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.inject(ctx, b.CACert); err != nil {
		return b, err
	}
	return b, nil
}

// onlyConflicts reports whether err, and every error joined into it, is a
// write that lost a race with another writer (a conflict on update, or
// already exists on create). Those are retried after a re-read without
// alarm; anything else is logged as an error.
func onlyConflicts(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if !onlyConflicts(e) {
				return false
			}
		}
		return len(joined.Unwrap()) > 0
	}
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
}
