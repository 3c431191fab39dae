package traffic

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// informerSource reads the cluster through a controller-runtime cache of its
// own, so that Pods and Deployments are filtered by label on the server side
// whatever the manager's cache is configured for, and so that it runs on every
// replica (a cache added to a manager on its own would wait for leadership).
type informerSource struct {
	cache cache.Cache
}

var _ source = (*informerSource)(nil)

func newInformerSource(cfg *rest.Config, scheme *runtime.Scheme, mapper meta.RESTMapper) (*informerSource, error) {
	hasService, err := labels.NewRequirement(v1alpha1.LabelService, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	sel := labels.NewSelector().Add(*hasService)
	c, err := cache.New(cfg, cache.Options{
		Scheme:           scheme,
		Mapper:           mapper,
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:        {Label: sel},
			&appsv1.Deployment{}: {Label: sel},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create informer cache: %w", err)
	}
	return &informerSource{cache: c}, nil
}

// run starts the cache, registers the change handlers and waits for the first
// list of every type.
func (s *informerSource) run(ctx context.Context, trigger func(urgent bool)) error {
	errc := make(chan error, 1)
	go func() { errc <- s.cache.Start(ctx) }()
	changed := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { trigger(false) },
		UpdateFunc: func(any, any) { trigger(false) },
		DeleteFunc: func(any) { trigger(false) },
	}
	handlers := map[client.Object]toolscache.ResourceEventHandler{
		&corev1.Pod{}:        changed,
		&corev1.Service{}:    changed,
		&appsv1.Deployment{}: changed,
		&v1alpha1.Rollout{}: toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { trigger(true) },
			UpdateFunc: func(o, n any) { trigger(rolloutMoved(o, n)) },
			DeleteFunc: func(any) { trigger(true) },
		},
	}
	for obj, h := range handlers {
		inf, err := s.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	if !s.cache.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return fmt.Errorf("informer cache stopped: %w", err)
		default:
			return fmt.Errorf("informer cache did not sync: %w", ctx.Err())
		}
	}
	return nil
}

// rolloutMoved reports whether a Rollout update changes what is routed: its
// phase, weight or spec. Those are published without debounce, since the
// rollout controller waits for them.
func rolloutMoved(o, n any) bool {
	old, ok1 := o.(*v1alpha1.Rollout)
	cur, ok2 := n.(*v1alpha1.Rollout)
	if !ok1 || !ok2 {
		return true
	}
	return old.Status.Phase != cur.Status.Phase || old.Status.CurrentWeight != cur.Status.CurrentWeight ||
		old.Generation != cur.Generation
}

func (s *informerSource) list(ctx context.Context) (Objects, error) {
	var (
		pods        corev1.PodList
		services    corev1.ServiceList
		deployments appsv1.DeploymentList
		rollouts    v1alpha1.RolloutList
	)
	// The controller never modifies what it lists, so it reads the cached
	// objects without copying them.
	for _, l := range []client.ObjectList{&pods, &services, &deployments, &rollouts} {
		if err := s.cache.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return Objects{}, fmt.Errorf("list %T: %w", l, err)
		}
	}
	return Objects{Pods: pods.Items, Services: services.Items, Deployments: deployments.Items, Rollouts: rollouts.Items}, nil
}
