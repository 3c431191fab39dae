package notify

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// QueueSize is how many messages wait per namespace; more are dropped.
const QueueSize = 64

// ReasonNotificationFailed is the reason of the warning Event on a Rollout
// whose notification could not be delivered.
const ReasonNotificationFailed = "NotificationFailed"

// Options configure a Notifier.
type Options struct {
	Log logr.Logger
	// Backoff is the retry schedule; default DefaultBackoff.
	Backoff Backoff
}

// Notifier sends rollout notifications. It runs on the leader only.
type Notifier struct {
	mgr       manager.Manager
	receivers receivers
	client    *http.Client
	backoff   Backoff
	log       logr.Logger
	events    events.EventRecorder

	mu      sync.Mutex
	lanes   map[string]chan item
	wg      sync.WaitGroup
	dropped atomic.Int64
}

type item struct {
	msg Message
	ro  *v1alpha1.Rollout
}

// New adds a Notifier to the manager.
func New(mgr manager.Manager, o Options) (*Notifier, error) {
	if o.Backoff.Attempts == 0 {
		o.Backoff = DefaultBackoff
	}
	n := &Notifier{
		mgr:       mgr,
		receivers: receivers{cached: mgr.GetClient(), secrets: mgr.GetAPIReader()},
		client:    newHTTPClient(),
		backoff:   o.Backoff,
		log:       o.Log,
		events:    mgr.GetEventRecorder("sluice-notify"),
		lanes:     map[string]chan item{},
	}
	if err := mgr.Add(n); err != nil {
		return nil, fmt.Errorf("add notifier: %w", err)
	}
	return n, nil
}

// NeedLeaderElection says only the leader notifies, so each transition is
// told once.
func (n *Notifier) NeedLeaderElection() bool { return true }

// Dropped counts messages dropped because a namespace's queue was full.
func (n *Notifier) Dropped() int64 { return n.dropped.Load() }

// Start follows Rollout status updates until ctx ends. Rollouts as they
// are when it starts are its baseline: a new leader does not repeat what
// the previous one told.
func (n *Notifier) Start(ctx context.Context) error {
	inf, err := n.mgr.GetCache().GetInformer(ctx, &v1alpha1.Rollout{})
	if err != nil {
		return fmt.Errorf("rollout informer: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*v1alpha1.Rollout)
			cur, ok2 := newObj.(*v1alpha1.Rollout)
			if !ok1 || !ok2 {
				return
			}
			for _, m := range Transitions(cur, old.Status, time.Now()) {
				n.enqueue(ctx, item{msg: m, ro: cur})
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch rollouts: %w", err)
	}
	<-ctx.Done()
	if err := inf.RemoveEventHandler(reg); err != nil {
		n.log.Error(err, "stop watching rollouts")
	}
	n.mu.Lock()
	for _, ch := range n.lanes {
		close(ch)
	}
	n.lanes = map[string]chan item{}
	n.mu.Unlock()
	n.wg.Wait()
	return nil
}

// enqueue hands it to its namespace's lane without ever blocking the
// watch: a full lane drops it.
func (n *Notifier) enqueue(ctx context.Context, it item) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	ch, ok := n.lanes[it.msg.Namespace]
	if !ok {
		ch = make(chan item, QueueSize)
		n.lanes[it.msg.Namespace] = ch
		n.wg.Add(1)
		go n.deliver(ctx, ch)
	}
	select {
	case ch <- it:
	default:
		n.dropped.Add(1)
		n.log.Info("notification dropped: the namespace's queue is full", "namespace", it.msg.Namespace,
			"rollout", it.msg.Rollout, "kind", it.msg.Kind)
	}
}

// deliver sends one namespace's messages in order.
func (n *Notifier) deliver(ctx context.Context, ch chan item) {
	defer n.wg.Done()
	for it := range ch {
		if ctx.Err() != nil {
			continue // drain: the process is stopping
		}
		log := n.log.WithValues("namespace", it.msg.Namespace, "rollout", it.msg.Rollout, "kind", it.msg.Kind)
		rec, ok, err := n.receivers.receiver(ctx, it.msg.Namespace)
		if err == nil && ok {
			err = send(ctx, n.client, rec, it.msg, n.backoff)
		}
		if err != nil && ctx.Err() == nil {
			log.Error(err, "notification not delivered")
			if it.ro != nil {
				n.events.Eventf(it.ro, nil, corev1.EventTypeWarning, ReasonNotificationFailed, "Notify",
					"%s notification not delivered: %v", it.msg.Kind, err)
			}
		}
	}
}
