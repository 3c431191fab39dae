package webhook

import (
	"sync"
	"sync/atomic"
)

// memo remembers values by key for the admission hot path. It holds at most
// limit entries and then computes without remembering: its keys name
// versions of objects (a namespace's resourceVersion), so it only grows with
// churn, and the bound keeps churn from growing it without end.
type memo[K comparable, V any] struct {
	limit int32
	m     sync.Map // K -> V
	n     atomic.Int32
}

// get returns the value for k, computing it with f the first time.
func (c *memo[K, V]) get(k K, f func() V) V {
	if v, ok := c.m.Load(k); ok {
		return v.(V)
	}
	v := f()
	if c.n.Add(1) <= c.limit {
		c.m.Store(k, v)
	}
	return v
}
