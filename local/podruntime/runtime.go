package podruntime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Defaults for Options.
const (
	// DefaultDrainTimeout is how long a stopped port lets calls in flight
	// finish unless Options.DrainTimeout says otherwise.
	DefaultDrainTimeout = time.Second
	// DefaultRetryMax caps the backoff between bind attempts unless
	// Options.RetryMax says otherwise.
	DefaultRetryMax = time.Second
	// retryBase is the first backoff after a failed bind.
	retryBase = 20 * time.Millisecond
)

// Options configure a Runtime. The zero value is ready to use.
type Options struct {
	// Log receives what the runtime serves, stops and ignores, and why.
	Log logr.Logger
	// DrainTimeout bounds how long a stopped port lets open connections
	// finish before closing them; DefaultDrainTimeout when zero.
	DrainTimeout time.Duration
	// RetryMax caps the backoff between attempts to bind an address that is
	// in use (for example a pod IP that kwok reused); DefaultRetryMax when zero.
	RetryMax time.Duration
}

// Counts are one pod's totals since the runtime first served it. They are
// kept across restarts of its listeners and after the pod is gone.
type Counts struct {
	// Requests counts every gRPC call and HTTP request the pod's ports
	// received.
	Requests int64
	// Errors counts the calls failed on purpose: SIM_ERROR_RATE faults and
	// calls failed because the container's env is malformed.
	Errors int64
}

// Endpoint is one address the runtime is listening on.
type Endpoint struct {
	Namespace string
	Pod       string
	IP        string
	Port      int32
	// Version is the image tag of the container that declares Port.
	Version string
}

// Runtime serves the Running pods of a cluster on their loopback pod IPs.
// Its methods are safe for concurrent use.
type Runtime struct {
	client  kubernetes.Interface
	opts    Options
	log     logr.Logger
	started atomic.Bool

	mu     sync.Mutex
	pods   map[string]*podServer // by namespace/name
	owners map[string]string     // listening address → pod key
	counts map[string]*counters  // by namespace/name
	drains sync.WaitGroup
	queue  workqueue.TypedRateLimitingInterface[string] // set by Run
	ctx    context.Context                              // Run's, for API calls
	// draining holds, by pod key, a channel closed when the pod's stopped
	// ports finished draining; removing the pods being deleted whose
	// objects the runtime is removing.
	draining map[string]chan struct{}
	removing map[string]bool
}

// podServer is one served pod: its spec and the ports bound so far.
type podServer struct {
	spec  PodSpec
	ports map[int32]*portServer
}

// New returns a Runtime that follows the pods visible through client. It
// serves nothing until Run.
func New(client kubernetes.Interface, opts Options) *Runtime {
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = DefaultRetryMax
	}
	return &Runtime{
		client: client,
		opts:   opts,
		log:    opts.Log.WithName("podruntime"),
		pods:   map[string]*podServer{},
		owners: map[string]string{},
		counts: map[string]*counters{},

		draining: map[string]chan struct{}{},
		removing: map[string]bool{},
	}
}

// Run watches Pods in all namespaces and serves them until ctx is done. Before
// returning it closes every listener and waits for open connections to drain
// (at most DrainTimeout). It returns nil when ctx ends, and an error when it
// cannot start. Run may be called once.
func (r *Runtime) Run(ctx context.Context) error {
	switch {
	case r.client == nil:
		return errors.New("pod runtime: no Kubernetes client")
	case r.opts.DrainTimeout < 0:
		return fmt.Errorf("pod runtime: DrainTimeout %s is negative", r.opts.DrainTimeout)
	case r.opts.RetryMax < retryBase:
		return fmt.Errorf("pod runtime: RetryMax %s is below the minimum %s", r.opts.RetryMax, retryBase)
	case !r.started.CompareAndSwap(false, true):
		return errors.New("pod runtime: Run called twice")
	}

	factory := informers.NewSharedInformerFactory(r.client, 0)
	pods := factory.Core().V1().Pods()
	informer := pods.Informer()
	queue := workqueue.NewTypedRateLimitingQueue(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, r.opts.RetryMax))
	r.queue = queue
	r.ctx = ctx
	enqueue := func(obj any) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			r.log.Error(err, "Cannot key pod event")
			return
		}
		queue.Add(key)
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("pod runtime: watch pods: %w", err)
	}

	factory.Start(ctx.Done())
	var worker sync.WaitGroup
	defer func() {
		queue.ShutDown()
		factory.Shutdown()
		worker.Wait()
		r.stopAll()
		r.drains.Wait()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("pod runtime: pod cache did not sync")
	}
	r.log.Info("Following pods", "drainTimeout", r.opts.DrainTimeout)
	worker.Go(func() { r.work(queue, pods.Lister()) })
	<-ctx.Done()
	return nil
}

// work reconciles queued pods until the queue shuts down.
func (r *Runtime) work(queue workqueue.TypedRateLimitingInterface[string], lister corelisters.PodLister) {
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		if err := r.sync(key, lister); err != nil {
			r.log.Error(err, "Pod not fully served; retrying", "pod", key, "attempt", queue.NumRequeues(key)+1)
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

// plan looks key up in the cache and decides what to serve for it.
func (r *Runtime) plan(key string, lister corelisters.PodLister) (PodPlan, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return PodPlan{}, fmt.Errorf("split pod key %q: %w", key, err)
	}
	pod, err := lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return PodPlan{Reason: "pod deleted"}, nil
	}
	if err != nil {
		return PodPlan{}, fmt.Errorf("get pod %s from cache: %w", key, err)
	}
	return Plan(pod), nil
}

// sync makes what is served for key match the pod in the cache (see serve),
// then marks a pod whose ports all listen Ready, as a readiness probe would.
func (r *Runtime) sync(key string, lister corelisters.PodLister) error {
	plan, err := r.serve(key, lister)
	if err != nil || !plan.Serve || plan.Ready {
		return err
	}
	return r.markReady(key, plan.UID, lister)
}

// serve stops listeners whose spec is stale, then binds every port not yet
// bound. A pod being deleted drains, then its object is removed (remove).
func (r *Runtime) serve(key string, lister corelisters.PodLister) (PodPlan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	plan, err := r.stopIfStale(key, lister)
	if err != nil {
		return PodPlan{}, err
	}
	if plan.Deleting && !r.removing[key] {
		r.removing[key] = true
		drained := r.draining[key]
		r.drains.Go(func() { r.remove(key, plan.UID, drained) })
	}
	if !plan.Serve {
		r.log.V(logLevel(plan.Refused)).Info("Not serving pod", "pod", key, "reason", plan.Reason)
		return plan, nil
	}
	ps := r.pods[key]
	if ps == nil {
		ps = &podServer{spec: plan.Spec, ports: map[int32]*portServer{}}
		r.pods[key] = ps
		r.log.Info("Serving pod", "pod", key, "ip", plan.Spec.IP, "ports", len(plan.Spec.Ports))
		for _, note := range plan.Notes {
			r.log.Info("Ignoring part of the pod spec", "pod", key, "note", note)
		}
	}
	c := r.counts[key]
	if c == nil {
		c = &counters{}
		r.counts[key] = c
	}
	var errs []error
	for _, spec := range ps.spec.Ports {
		if ps.ports[spec.Port] != nil {
			continue
		}
		addr := net.JoinHostPort(ps.spec.IP, strconv.Itoa(int(spec.Port)))
		if owner, held := r.owners[addr]; held && owner != key {
			// kwok reuses the IPs of deleted pods: close the old pod's
			// listener first if the cache says it is gone.
			ownerPlan, err := r.stopIfStale(owner, lister)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ownerPlan.Serve && r.pods[owner] == nil {
				// The owner moved to a new spec: serve that too.
				r.queue.Add(owner)
			}
			if still, held := r.owners[addr]; held && still != key {
				errs = append(errs, fmt.Errorf("address %s for pod %s is held by pod %s, which still serves it", addr, key, still))
				continue
			}
		}
		port, err := startPort(r.log.WithValues("pod", key), ps.spec, spec, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps.ports[spec.Port] = port
		r.owners[addr] = key
	}
	return plan, errors.Join(errs...)
}

// markReady sets the Ready and ContainersReady conditions of pod key (of
// uid) and its containers' ready flags, once its ports listen.
func (r *Runtime) markReady(key string, uid types.UID, lister corelisters.PodLister) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split pod key %q: %w", key, err)
	}
	pod, err := lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get pod %s from cache: %w", key, err)
	}
	if pod.UID != uid || pod.DeletionTimestamp != nil || podReady(pod) {
		return nil
	}
	pod = pod.DeepCopy()
	now := metav1.Now()
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
		if i := slices.IndexFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == t }); i >= 0 {
			pod.Status.Conditions[i] = c
		} else {
			pod.Status.Conditions = append(pod.Status.Conditions, c)
		}
	}
	for i := range pod.Status.ContainerStatuses {
		pod.Status.ContainerStatuses[i].Ready = true
	}
	if _, err := r.client.CoreV1().Pods(ns).UpdateStatus(r.ctx, pod, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("mark pod %s Ready: %w", key, err)
	}
	r.log.V(1).Info("Pod Ready: its ports listen", "pod", key)
	return nil
}

// remove deletes the object of pod key (of uid), which is being deleted,
// once its ports finished draining (drained closed, or nil when it served
// nothing), as a kubelet removes a pod whose containers stopped. When it
// cannot, kwok's pod-delete stage removes it at the end of its grace period.
func (r *Runtime) remove(key string, uid types.UID, drained <-chan struct{}) {
	defer func() {
		r.mu.Lock()
		delete(r.removing, key)
		r.mu.Unlock()
	}()
	if drained != nil {
		select {
		case <-drained:
		case <-r.ctx.Done():
			return
		}
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		r.log.Error(err, "Cannot remove pod", "pod", key)
		return
	}
	err = r.client.CoreV1().Pods(ns).Delete(r.ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case err == nil:
		r.log.V(1).Info("Removed the drained pod", "pod", key)
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err) || r.ctx.Err() != nil:
	default:
		r.log.Error(err, "Cannot remove the drained pod; it goes at the end of its grace period", "pod", key)
	}
}

// stopIfStale stops what is served for key unless it matches the pod in the
// cache, and returns the pod's plan. The caller holds r.mu.
func (r *Runtime) stopIfStale(key string, lister corelisters.PodLister) (PodPlan, error) {
	plan, err := r.plan(key, lister)
	if err != nil {
		return PodPlan{}, err
	}
	ps := r.pods[key]
	if ps == nil || (plan.Serve && ps.spec.Equal(plan.Spec)) {
		return plan, nil
	}
	reason := plan.Reason
	if plan.Serve {
		reason = "pod spec changed; restarting with the new one"
	}
	drain := r.opts.DrainTimeout
	if plan.Deleting && plan.Grace > 0 {
		// As a gRPC server told to stop by SIGTERM: no new calls (GOAWAY),
		// calls in flight finish within the pod's grace period.
		drain = plan.Grace
	}
	r.log.Info("Stopping pod", "pod", key, "reason", reason, "drain", drain)
	r.stopPod(key, ps, drain)
	return plan, nil
}

// stopPod closes ps's listeners at once and drains them in the background
// for at most drain; r.draining[key] is closed when they are done. The
// caller holds r.mu.
func (r *Runtime) stopPod(key string, ps *podServer, drain time.Duration) {
	var ports sync.WaitGroup
	for _, port := range ps.ports {
		done := port.stop(drain)
		ports.Go(func() { <-done })
		delete(r.owners, port.addr)
	}
	delete(r.pods, key)
	drained := make(chan struct{})
	r.draining[key] = drained
	r.drains.Go(func() {
		ports.Wait()
		close(drained)
		r.mu.Lock()
		if r.draining[key] == drained {
			delete(r.draining, key)
		}
		r.mu.Unlock()
	})
}

// stopAll stops every served pod.
func (r *Runtime) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, ps := range r.pods {
		r.stopPod(key, ps, r.opts.DrainTimeout)
	}
}

// Counts returns the totals of pod namespace/name; zero when the runtime
// never served it.
func (r *Runtime) Counts(namespace, pod string) Counts {
	r.mu.Lock()
	c := r.counts[namespace+"/"+pod]
	r.mu.Unlock()
	if c == nil {
		return Counts{}
	}
	return Counts{Requests: c.requests.Load(), Errors: c.errors.Load()}
}

// Serving returns every address listening now, sorted by namespace, pod and
// port.
func (r *Runtime) Serving() []Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Endpoint
	for _, ps := range r.pods {
		for _, port := range ps.ports {
			out = append(out, port.endpoint())
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// logLevel is the verbosity for a pod that is not served: refusals show at
// the default level, routine waits (not Running yet) only when verbose.
func logLevel(refused bool) int {
	if refused {
		return 0
	}
	return 1
}
