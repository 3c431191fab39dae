package translate

import (
	"maps"

	"github.com/sluice-dev/sluice/router"
)

// Access says whose proxies may see a resource. Every resource Translate
// returns has one: a service's listeners, route configurations, clusters
// and endpoints belong to the service's namespace and are granted to its
// consumers; a sidecar listener and route configuration belong to the
// namespace whose sidecars they serve and are granted to no other.
type Access struct {
	// Namespace owns the resource.
	Namespace string `json:"namespace"`
	// Consumers are the other namespaces that may see it.
	Consumers router.Consumers `json:"consumers,omitempty"`
}

// Allows reports whether a proxy in namespace may see the resource.
func (a Access) Allows(namespace string) bool { return a.Consumers.Allows(a.Namespace, namespace) }

// Access returns who may see a resource; ok is false for a resource that
// is not in r.
func (r Resources) Access(typeURL, name string) (Access, bool) {
	a, ok := r.access[typeURL][name]
	return a, ok
}

// AccessByType returns a new map of the access of every resource of a type,
// by name.
func (r Resources) AccessByType(typeURL string) map[string]Access {
	return maps.Clone(r.access[typeURL])
}
