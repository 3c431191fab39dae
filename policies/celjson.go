package policies

import (
	"bytes"
	"fmt"
	"strconv"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"github.com/go-json-experiment/json/jsontext"
)

// decodeFields decodes one JSON value into the shapes CEL rules read, as
// the API machinery's unstructured objects have them: objects as
// map[string]any, arrays as []any, integers as int64 and other numbers as
// float64; of objects it keeps only the members reads names (nil reads
// everything). It is the fast path of celVars: a streaming decode of the
// bytes kube-apiserver sent costs half of converting the decoded Deployment
// back by reflection, and less again when rules read little of it.
func decodeFields(raw []byte, reads *Fields) (any, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	var scratch []member
	v, err := decodeValue(dec, reads, &scratch)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err == nil {
		return nil, fmt.Errorf("data after the JSON value at offset %d", dec.InputOffset())
	}
	return v, nil
}

// member is one member of an object being decoded.
type member struct {
	key   string
	value any
}

// decodeValue decodes the next value; of an object, only the members reads
// names (nil reads everything, and so does every value below a list).
// Objects gather their members on scratch, shared by the whole decode, so
// that each map is made at its size with no other allocation; members left
// out are skipped without any.
func decodeValue(dec *jsontext.Decoder, reads *Fields, scratch *[]member) (any, error) {
	if reads.readsWhole() {
		reads = nil
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case 't', 'f':
		return tok.Bool(), nil
	case '"':
		return tok.String(), nil
	case '0':
		text := tok.String()
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("number %s at offset %d: %w", text, dec.InputOffset(), err)
		}
		return f, nil
	case '{':
		base := len(*scratch)
		for dec.PeekKind() != '}' {
			k, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			key := k.String() // the token is only valid until the next read
			var sub *Fields
			if reads != nil {
				if sub = reads.members[key]; sub == nil {
					if err := dec.SkipValue(); err != nil {
						return nil, err
					}
					continue
				}
			}
			v, err := decodeValue(dec, sub, scratch)
			if err != nil {
				return nil, err
			}
			*scratch = append(*scratch, member{key, v})
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		members := (*scratch)[base:]
		m := make(map[string]any, len(members))
		for _, mb := range members {
			m[mb.key] = mb.value
		}
		clear(members)
		*scratch = (*scratch)[:base]
		return m, nil
	case '[':
		l := []any{}
		for dec.PeekKind() != ']' {
			v, err := decodeValue(dec, nil, scratch)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		return l, nil
	default:
		return nil, fmt.Errorf("unexpected JSON token %s at offset %d", tok.Kind(), dec.InputOffset())
	}
}

// celReady prepares a JSON-shaped value for many CEL programs: every list
// becomes a CEL list of CEL values once, where each program would otherwise
// wrap it again on every read. Maps stay Go maps, which CEL reads fastest;
// their values are prepared in place, so v must not be shared yet.
func celReady(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if p := celReady(e); p != nil {
				v[k] = p
			}
		}
		return v
	case []any:
		elems := make([]ref.Val, len(v))
		for i, e := range v {
			elems[i] = types.DefaultTypeAdapter.NativeToValue(celReady(e))
		}
		return types.NewRefValList(types.DefaultTypeAdapter, elems)
	default:
		return v
	}
}
