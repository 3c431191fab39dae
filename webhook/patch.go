package webhook

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// PatchOp is one RFC 6902 JSON Patch operation.
type PatchOp struct {
	// Op is "add", "replace" or "remove".
	Op string `json:"op"`
	// Path is an RFC 6901 JSON Pointer.
	Path string `json:"path"`
	// Value is the new value; absent for "remove".
	Value any `json:"value,omitempty"`
}

// String formats the operation for test failures and logs.
func (o PatchOp) String() string {
	if o.Op == "remove" {
		return fmt.Sprintf("%s %s", o.Op, o.Path)
	}
	return fmt.Sprintf("%s %s %v", o.Op, o.Path, o.Value)
}

// EscapePointer escapes one JSON Pointer reference token (RFC 6901 §3): "~"
// becomes "~0" and "/" becomes "~1", so a label key such as sluice.dev/team
// addresses one map member.
func EscapePointer(token string) string {
	if !strings.ContainsAny(token, "~/") {
		return token
	}
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

// MarshalPatch encodes ops as a JSON Patch document. It returns nil for no
// operations.
func MarshalPatch(ops []PatchOp) ([]byte, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	size := 2
	for _, op := range ops {
		size += len(`{"op":"replace","path":"","value":""},`) + len(op.Path)
		switch v := op.Value.(type) {
		case string:
			size += len(v)
		case map[string]string:
			for k, e := range v {
				size += len(k) + len(e) + 6
			}
		}
	}
	b := make([]byte, 0, size+size/8) // room for escapes
	b = append(b, '[')
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = appendString(b, op.Op)
		b = append(b, `,"path":`...)
		b = appendString(b, op.Path)
		if op.Value != nil {
			b = append(b, `,"value":`...)
			var err error
			if b, err = appendValue(b, op.Value); err != nil {
				return nil, fmt.Errorf("encode JSON patch: %w", err)
			}
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendValue appends a patch value: the label maps, strings and booleans
// Mutate produces directly, anything else through encoding/json.
func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case map[string]string:
		b = append(b, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, v[k])
		}
		return append(b, '}'), nil
	default:
		raw, err := json.Marshal(v)
		return append(b, raw...), err
	}
}

// mapPatch returns the operations that turn the string map at path (nil
// when the member is absent or null) into one where every key of set has its
// value and no key of remove exists. Keys are visited in sorted order so the
// patch is deterministic. An absent map is created whole with one "add"; a
// map needing more than maxKeyOps key changes is replaced whole with one
// "replace".
func mapPatch(path string, cur map[string]string, set map[string]string, remove []string) []PatchOp {
	return appendMapPatch(nil, path, cur, set, sortedKeys(set), remove)
}

// appendMapPatch is mapPatch with the keys of set (and remove) already
// sorted, appending to ops.
func appendMapPatch(ops []PatchOp, path string, cur map[string]string, set map[string]string, setKeys []string, remove []string) []PatchOp {
	if cur == nil {
		if len(set) == 0 {
			return ops
		}
		whole := make(map[string]string, len(set))
		for k, v := range set {
			whole[k] = v
		}
		return append(ops, PatchOp{Op: "add", Path: path, Value: whole})
	}
	if changes := countChanges(cur, set, setKeys, remove); changes == 0 {
		return ops
	} else if changes > maxKeyOps {
		// One op replacing the whole map is smaller to send and cheaper for
		// kube-apiserver to apply than many; the patch applies to exactly
		// the object under admission, so it loses nothing.
		whole := make(map[string]string, len(cur)+len(set))
		for k, v := range cur {
			whole[k] = v
		}
		for _, k := range remove {
			if _, kept := set[k]; !kept {
				delete(whole, k)
			}
		}
		for k, v := range set {
			whole[k] = v
		}
		return append(ops, PatchOp{Op: "replace", Path: path, Value: whole})
	}
	prefix := path + "/"
	for _, k := range setKeys {
		v := set[k]
		old, ok := cur[k]
		switch {
		case !ok:
			ops = append(ops, PatchOp{Op: "add", Path: prefix + EscapePointer(k), Value: v})
		case old != v:
			ops = append(ops, PatchOp{Op: "replace", Path: prefix + EscapePointer(k), Value: v})
		}
	}
	for _, k := range remove {
		if _, ok := cur[k]; ok {
			if _, kept := set[k]; !kept {
				ops = append(ops, PatchOp{Op: "remove", Path: prefix + EscapePointer(k)})
			}
		}
	}
	return ops
}

// maxKeyOps is the most keys of one map a patch changes one op each.
const maxKeyOps = 8

// countChanges counts the keys of cur that setting set and removing remove
// changes.
func countChanges(cur, set map[string]string, setKeys, remove []string) int {
	n := 0
	for _, k := range setKeys {
		if old, ok := cur[k]; !ok || old != set[k] {
			n++
		}
	}
	for _, k := range remove {
		if _, ok := cur[k]; ok {
			if _, kept := set[k]; !kept {
				n++
			}
		}
	}
	return n
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ApplyPatch applies a JSON Patch document to a JSON document, as
// kube-apiserver does with the mutating webhook's answer; for offline
// evaluation and tests.
func ApplyPatch(doc, patch []byte) ([]byte, error) {
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("decode JSON patch: %w", err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		return nil, fmt.Errorf("apply JSON patch: %w", err)
	}
	return out, nil
}
