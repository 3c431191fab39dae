package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

// ContentVersion returns the content version of m: the hex SHA-256 of its
// deterministic protobuf encoding. Two messages with the same content have the
// same version, whatever the order they were built in.
func ContentVersion(m proto.Message) (string, error) {
	b, err := cache.MarshalResource(m)
	if err != nil {
		return "", fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return cache.HashResource(b), nil
}

// historyDepth is how many past contents are remembered per resource. A proxy
// that acknowledges a cache version older than that is treated as carrying an
// unknown content, which only makes waits last longer, never shorter.
const historyDepth = 32

// revision is the content a resource held from cache version from on; an
// empty content means the resource was deleted.
type revision struct {
	from    uint64
	content string
}

// history remembers, per type and resource name, the content version held at
// each cache version, so a state-of-the-world ACK (which names a cache
// version) can be mapped to contents.
type history struct {
	mu     sync.RWMutex
	byType map[string]map[string][]revision
}

func newHistory() *history {
	return &history{byType: map[string]map[string][]revision{}}
}

// record notes that from cache version v on, each named resource of typeURL
// holds the given content ("" for deleted).
func (h *history) record(typeURL string, v uint64, contents map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := h.byType[typeURL]
	if names == nil {
		names = map[string][]revision{}
		h.byType[typeURL] = names
	}
	for name, c := range contents {
		revs := append(names[name], revision{from: v, content: c})
		if len(revs) > historyDepth {
			revs = append([]revision(nil), revs[len(revs)-historyDepth:]...)
		}
		if c == "" && len(revs) == 1 {
			// A resource that never existed needs no tombstone.
			continue
		}
		names[name] = revs
	}
	// Forget resources deleted long ago: only a proxy answering a response
	// older than historyDepth versions could still ask about them.
	for name, revs := range names {
		last := revs[len(revs)-1]
		if last.content == "" && v-last.from > historyDepth {
			delete(names, name)
		}
	}
}

// contentAt returns the content of name at cache version v, or "" when it did
// not exist or is older than the remembered history.
func (h *history) contentAt(typeURL, name string, v uint64) string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	revs := h.byType[typeURL][name]
	for i := len(revs) - 1; i >= 0; i-- {
		if revs[i].from <= v {
			return revs[i].content
		}
	}
	return ""
}

// heldVersion is the state-of-the-world version_info of a stream that holds
// contents (resource name to content version) of one type: the hex SHA-256
// of the sorted name and content pairs. It is a pure function of what the
// stream holds, so every replica, and a restarted one, gives the same string
// for the same contents, whatever the stream's form or namespace (they show
// in the contents themselves). A client that presents it on a new stream
// claims exactly those contents; see [tracker.resumeLocked].
func heldVersion(contents map[string]string) string {
	h := sha256.New()
	for _, name := range sortedKeys(contents) {
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write([]byte(contents[name]))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// latest returns the cache version from which name has held its current
// content, and that content ("" when it does not exist now).
func (h *history) latest(typeURL, name string) (uint64, string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	revs := h.byType[typeURL][name]
	if len(revs) == 0 {
		return 0, ""
	}
	r := revs[len(revs)-1]
	return r.from, r.content
}

// names returns every name of typeURL the history remembers, existing now
// or not.
func (h *history) names(typeURL string) []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return sortedKeys(h.byType[typeURL])
}
