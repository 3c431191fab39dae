package translate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Resources are the xDS resources of one plan, by type URL (resource.ListenerType,
// resource.RouteType, resource.ClusterType, resource.EndpointType) and name.
// Its accessors return sorted results, so iterating it is deterministic. The
// zero value holds no resources.
type Resources struct {
	byType  map[string]map[string]proto.Message
	version string
	// variants holds, per form other than FormCurrent, the route
	// configurations whose content differs in that form.
	variants map[Form]map[string]proto.Message
	limits   map[Form][]Limit
	// access says, per type URL and name, whose proxies may see each resource.
	access map[string]map[string]Access
}

// Variant returns the route configurations (by name) that clients of form
// read differently from [FormCurrent]: each replaces the resource of the
// same name in [Resources.ByType](resource.RouteType). Every other resource
// is the same in every form. It returns an empty map for FormCurrent. The
// messages are shared: callers must not modify them.
func (r Resources) Variant(form Form) map[string]proto.Message {
	return maps.Clone(r.variants[form])
}

// Limits returns what the proxyless clients of a form cannot express in
// this plan, and what they get instead, sorted by route and feature.
func (r Resources) Limits(form Form) []Limit {
	return slices.Clone(r.limits[form])
}

// Types returns the type URLs that have at least one resource, sorted.
func (r Resources) Types() []string { return slices.Sorted(maps.Keys(r.byType)) }

// Names returns the names of the resources of a type, sorted.
func (r Resources) Names(typeURL string) []string { return slices.Sorted(maps.Keys(r.byType[typeURL])) }

// Get returns one resource.
func (r Resources) Get(typeURL, name string) (proto.Message, bool) {
	m, ok := r.byType[typeURL][name]
	return m, ok
}

// ByType returns a new map of the resources of one type, ready to hand to a
// cache (for example go-control-plane's LinearCache.SetResources). The
// messages are shared: callers must not modify them.
func (r Resources) ByType(typeURL string) map[string]proto.Message {
	return maps.Clone(r.byType[typeURL])
}

// Len returns the number of resources of all types.
func (r Resources) Len() int {
	n := 0
	for _, m := range r.byType {
		n += len(m)
	}
	return n
}

// Version is a content hash of all resources (type URL, name and
// deterministic wire encoding of each). Equal resources built by the same
// binary have equal versions; any change to any resource changes it.
func (r Resources) Version() string { return r.version }

// add stores a resource; a name used twice within a type is a translator
// bug that Translate reports.
func (r *Resources) add(typeURL, name string, m proto.Message, a Access) error {
	if r.byType == nil {
		r.byType = map[string]map[string]proto.Message{}
		r.access = map[string]map[string]Access{}
	}
	if r.byType[typeURL] == nil {
		r.byType[typeURL] = map[string]proto.Message{}
		r.access[typeURL] = map[string]Access{}
	}
	if _, dup := r.byType[typeURL][name]; dup {
		return fmt.Errorf("%s %q generated twice", shortType(typeURL), name)
	}
	r.byType[typeURL][name] = m
	r.access[typeURL][name] = a
	return nil
}

// seal computes the version. Lengths are written before each field so that
// no two different sets of resources hash the same byte stream. Access is
// part of the version: a grant that changes no resource still changes what
// proxies may see, so it must be published.
func (r *Resources) seal() error {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, t := range r.Types() {
		for _, name := range r.Names(t) {
			b, err := opts.Marshal(r.byType[t][name])
			if err != nil {
				return fmt.Errorf("encode %s %q: %w", shortType(t), name, err)
			}
			field([]byte(t))
			field([]byte(name))
			field(b)
			a := r.access[t][name]
			field([]byte(a.Namespace))
			if a.Consumers.All {
				field([]byte("*"))
			}
			for _, ns := range a.Consumers.Namespaces {
				field([]byte(ns))
			}
			field(nil)
		}
	}
	for _, f := range Forms[1:] {
		for _, name := range slices.Sorted(maps.Keys(r.variants[f])) {
			b, err := opts.Marshal(r.variants[f][name])
			if err != nil {
				return fmt.Errorf("encode form %s route %q: %w", f, name, err)
			}
			field([]byte(f))
			field([]byte(name))
			field(b)
		}
	}
	r.version = hex.EncodeToString(h.Sum(nil)[:16])
	return nil
}

// shortType returns the message name of a type URL, for error messages.
func shortType(typeURL string) string {
	if len(typeURL) > len(resource.APITypePrefix) && typeURL[:len(resource.APITypePrefix)] == resource.APITypePrefix {
		return typeURL[len(resource.APITypePrefix):]
	}
	return typeURL
}
