package certs

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	admissionv1informers "k8s.io/client-go/informers/admissionregistration/v1"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// informerResync makes every informer replay its cache now and then, so a
// handler that failed to act on an event gets another chance even when the
// object does not change again.
const informerResync = 10 * time.Minute

// secretInformer watches one Secret. The field selector keeps the cache to
// that Secret; handlers still check the name, because not every server (and
// not client-go's fake) honours field selectors on watches.
func secretInformer(cs kubernetes.Interface, namespace, name string) cache.SharedIndexInformer {
	return corev1informers.NewFilteredSecretInformer(cs, namespace, informerResync, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
}

// webhookInformers watches the mutating and validating webhook
// configurations. They are few and small, so all are watched and handlers
// filter by name.
func webhookInformers(cs kubernetes.Interface) []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{
		admissionv1informers.NewMutatingWebhookConfigurationInformer(cs, informerResync, cache.Indexers{}),
		admissionv1informers.NewValidatingWebhookConfigurationInformer(cs, informerResync, cache.Indexers{}),
	}
}

// onObject calls fn with the object of every add, update and delete event
// whose object passes match. Deleted objects seen only on relist arrive
// unwrapped.
func onObject(inf cache.SharedIndexInformer, match func(metav1.Object) bool, fn func(obj any, deleted bool)) error {
	call := func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, ok := obj.(metav1.Object); ok && match(m) {
			fn(obj, deleted)
		}
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { call(obj, false) },
		UpdateFunc: func(_, obj any) { call(obj, false) },
		DeleteFunc: func(obj any) { call(obj, true) },
	})
	return err
}

// runInformers runs informers until ctx ends.
func runInformers(ctx context.Context, infs ...cache.SharedIndexInformer) {
	for _, inf := range infs {
		go inf.RunWithContext(ctx)
	}
}

// newTrigger returns a channel holding at most one pending wake-up, and an
// event handler for onObject that sets it: events that arrive while a pass
// runs coalesce into one more pass.
func newTrigger() (<-chan struct{}, func(any, bool)) {
	trigger := make(chan struct{}, 1)
	return trigger, func(any, bool) {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
}
