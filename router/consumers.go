package router

import "slices"

// Consumers are the namespaces, besides its own, whose proxies may see a
// service's resources over xDS (its listeners, routes, clusters and
// endpoints, cohort values and splits included) and route to it. The zero
// value grants no other namespace.
type Consumers struct {
	// All grants every namespace.
	All bool `json:"all,omitempty"`
	// Namespaces are the namespaces granted, sorted and without duplicates.
	Namespaces []string `json:"namespaces,omitempty"`
}

// Allows reports whether a proxy in namespace may see a service of namespace
// owner with these consumers: its own namespace always may, another one
// only when granted. An empty namespace (no known namespace) never may.
func (c Consumers) Allows(owner, namespace string) bool {
	switch {
	case namespace == "":
		return false
	case namespace == owner, c.All:
		return true
	}
	_, ok := slices.BinarySearch(c.Namespaces, namespace)
	return ok
}

// Union returns the namespaces granted by c or d.
func (c Consumers) Union(d Consumers) Consumers {
	if c.All || d.All {
		return Consumers{All: true}
	}
	ns := slices.Concat(c.Namespaces, d.Namespaces)
	slices.Sort(ns)
	return Consumers{Namespaces: slices.Compact(ns)}
}
