package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// Paths the webhooks are served on.
const (
	PathMutateDeployment         = "/mutate-apps-v1-deployment"
	PathValidateDeployment       = "/validate-apps-v1-deployment"
	PathValidateDeploymentPolicy = "/validate-sluice-dev-v1alpha1-deploymentpolicy"
)

// Defaults of Options.
const (
	DefaultStatusInterval = 5 * time.Second
	DefaultNamespaceWait  = 2 * time.Second
	// EventSource is the reporting controller of the webhooks' Events.
	EventSource = "sluice-admission"
)

// Options configure Register.
type Options struct {
	// Namespace is Sluice's own namespace. Deployments there are never
	// governed by policies (the webhook configurations also exclude it).
	Namespace string
	// Self is the user name that Sluice's own API requests carry, as
	// kube-apiserver authenticates them (Identity finds it). Only requests
	// by Self create canaries that policies do not judge again; empty,
	// every canary is judged like any Deployment.
	Self string
	// Now is the clock for freeze windows and exception expiry; default
	// time.Now.
	Now func() time.Time
	// Recorder receives audit Events; default the manager's recorder for
	// EventSource.
	Recorder events.EventRecorder
	// Registerer receives the admission metrics; default controller-runtime's
	// metrics.Registry.
	Registerer prometheus.Registerer
	// StatusInterval is how often policy status is written; default
	// DefaultStatusInterval.
	StatusInterval time.Duration
	// NamespaceWait bounds how long a request waits for a namespace created
	// just before it to reach the cache; default DefaultNamespaceWait. Keep
	// it well below the webhooks' timeout.
	NamespaceWait time.Duration
}

// Webhooks are the registered admission webhooks.
type Webhooks struct {
	store  *PolicyStore
	synced atomic.Bool
}

// Register adds the three admission handlers to the manager's webhook
// server and adds the runnables that keep the policy store current (every
// replica) and write policy status (every replica, batched). Handlers answer
// 503 until the store has synced, so no request is admitted against an
// incomplete set of policies; ReadyCheck reports the same.
func Register(mgr manager.Manager, opts Options) (*Webhooks, error) {
	if opts.StatusInterval < 0 || opts.NamespaceWait < 0 {
		return nil, fmt.Errorf("webhook options: StatusInterval (%s) and NamespaceWait (%s) must not be negative",
			opts.StatusInterval, opts.NamespaceWait)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StatusInterval == 0 {
		opts.StatusInterval = DefaultStatusInterval
	}
	if opts.NamespaceWait == 0 {
		opts.NamespaceWait = DefaultNamespaceWait
	}
	if opts.Registerer == nil {
		opts.Registerer = crmetrics.Registry
	}
	if opts.Recorder == nil {
		opts.Recorder = mgr.GetEventRecorder(EventSource)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Webhooks{store: NewPolicyStore()}
	h := &handlers{
		store:         w.store,
		reader:        mgr.GetCache(),
		now:           opts.Now,
		metrics:       m,
		audit:         newAuditor(opts.Recorder),
		ownNamespace:  opts.Namespace,
		self:          opts.Self,
		namespaceWait: opts.NamespaceWait,
	}
	srv := mgr.GetWebhookServer()
	log := mgr.GetLogger().WithName("admission")
	srv.Register(PathMutateDeployment, w.reviewHandler(h.mutateDeployment, m, log))
	srv.Register(PathValidateDeployment, w.reviewHandler(h.validateDeployment, m, log))
	srv.Register(PathValidateDeploymentPolicy, w.webhook(h.instrument(kindDeploymentPolicy, h.validatePolicy)))

	if err := mgr.Add(&storeSync{webhooks: w, cache: mgr.GetCache()}); err != nil {
		return nil, fmt.Errorf("add policy store: %w", err)
	}
	sw := &statusWriter{
		store:    w.store,
		audit:    h.audit,
		client:   mgr.GetClient(),
		interval: opts.StatusInterval,
		now:      opts.Now,
		synced:   w.synced.Load,
	}
	if err := mgr.Add(sw); err != nil {
		return nil, fmt.Errorf("add policy status writer: %w", err)
	}
	return w, nil
}

// reviewHandler serves a Deployment handler, answering 503 until the store
// has synced.
func (w *Webhooks) reviewHandler(next deploymentHandler, m *metrics, log logr.Logger) *reviewHandler {
	return &reviewHandler{webhooks: w, handle: next, metrics: m, log: log, recoverPanic: true}
}

// webhook serves a handler, answering 503 until the store has synced.
func (w *Webhooks) webhook(next admission.HandlerFunc) *admission.Webhook {
	return &admission.Webhook{Handler: admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		if req.UID == "" || req.Operation == "" {
			return admission.Errored(http.StatusBadRequest, errNotAReview)
		}
		if !w.synced.Load() {
			return admission.Errored(http.StatusServiceUnavailable, errNotSynced)
		}
		return next(ctx, req)
	})}
}

var errNotAReview = errors.New("the body is not an AdmissionReview with a request (uid and operation are required)")

var errNotSynced = errors.New("sluice has not loaded its DeploymentPolicies, Namespaces and Rollouts yet; retry in a moment")

// ReadyCheck is a healthz.Checker that fails until the policy store, the
// Namespace cache and the Rollout cache have synced, for mgr.AddReadyzCheck.
func (w *Webhooks) ReadyCheck() healthz.Checker {
	return func(*http.Request) error {
		if !w.synced.Load() {
			return errNotSynced
		}
		return nil
	}
}

// Policies returns the DeploymentPolicies that compiled, as admission
// applies them, for policies.ResolveDelivery in the rollout controller; it
// fails until the store has synced, so that no delivery is resolved without
// the policies.
func (w *Webhooks) Policies() ([]*policies.Compiled, error) {
	if !w.synced.Load() {
		return nil, errNotSynced
	}
	return w.store.Snapshot().Compiled, nil
}

// Store is the policy store the handlers read.
func (w *Webhooks) Store() *PolicyStore { return w.store }

// storeSync feeds the policy store from the manager's cache and marks the
// webhooks synced once the DeploymentPolicy, Namespace and Rollout
// informers have.
type storeSync struct {
	webhooks *Webhooks
	cache    cache.Cache
}

// NeedLeaderElection reports false: every replica serves admission.
func (s *storeSync) NeedLeaderElection() bool { return false }

// Start runs until ctx ends.
func (s *storeSync) Start(ctx context.Context) error {
	pol, err := s.cache.GetInformer(ctx, &v1alpha1.DeploymentPolicy{})
	if err != nil {
		return fmt.Errorf("DeploymentPolicy informer: %w", err)
	}
	reg, err := pol.AddEventHandler(s.webhooks.store.eventHandler())
	if err != nil {
		return fmt.Errorf("watch DeploymentPolicies: %w", err)
	}
	defer func() {
		if err := pol.RemoveEventHandler(reg); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "stop watching DeploymentPolicies")
		}
	}()
	ns, err := s.cache.GetInformer(ctx, &corev1.Namespace{})
	if err != nil {
		return fmt.Errorf("Namespace informer: %w", err)
	}
	ro, err := s.cache.GetInformer(ctx, &v1alpha1.Rollout{})
	if err != nil {
		return fmt.Errorf("Rollout informer: %w", err)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced, ns.HasSynced, ro.HasSynced) {
		return nil // ctx ended first
	}
	s.webhooks.synced.Store(true)
	<-ctx.Done()
	return nil
}
