package webhook

import (
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
)

// maxNamespaceMemo bounds a namespaceMemo.
const maxNamespaceMemo = 10_000

// namespaceMemo remembers a value worked out from a namespace, per version
// of that namespace, for the admission hot path. Its keys are resourceVersions,
// so it only grows with churn; past maxNamespaceMemo entries it computes
// without remembering, so churn cannot grow it without end. The zero value is
// ready to use.
type namespaceMemo[V any] struct {
	m sync.Map // namespaceKey -> V
	n atomic.Int32
}

// namespaceKey names a version of a namespace.
type namespaceKey struct{ name, resourceVersion string }

// get returns the value for ns, computing it with f the first time for ns's
// resourceVersion (every time for a namespace without one).
func (c *namespaceMemo[V]) get(ns *corev1.Namespace, f func() V) V {
	if ns.ResourceVersion == "" {
		return f()
	}
	k := namespaceKey{ns.Name, ns.ResourceVersion}
	if v, ok := c.m.Load(k); ok {
		return v.(V)
	}
	v := f()
	if c.n.Add(1) <= maxNamespaceMemo {
		c.m.Store(k, v)
	}
	return v
}
