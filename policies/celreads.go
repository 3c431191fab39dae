package policies

import (
	"bytes"
	"fmt"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// CEL rules read a few fields of a Deployment (its containers, a label)
// while the object kube-apiserver sends carries much more (managedFields,
// status, every annotation). Sluice works out at compile time which fields
// each rule can reach from object and oldObject, and decodes only those for
// CEL. Anything the analysis does not fully understand reads the whole
// value, so a projection can only ever hold more than a rule reads.

// Fields is the set of fields CEL rules read below a value: either the whole
// value, or some of its members (each a Fields itself). The zero Fields reads
// nothing.
type Fields struct {
	whole   bool
	members map[string]*Fields
}

// readsWhole reports whether the whole value is read.
func (f *Fields) readsWhole() bool { return f != nil && f.whole }

// add marks path (and everything below it) as read.
func (f *Fields) add(path []string) {
	for _, name := range path {
		if f.whole {
			return
		}
		if f.members == nil {
			f.members = map[string]*Fields{}
		}
		next := f.members[name]
		if next == nil {
			next = &Fields{}
			f.members[name] = next
		}
		f = next
	}
	f.whole, f.members = true, nil
}

// merge adds everything o reads.
func (f *Fields) merge(o *Fields) {
	if o == nil || f.whole {
		return
	}
	if o.whole {
		f.whole, f.members = true, nil
		return
	}
	for name, m := range o.members {
		if f.members == nil {
			f.members = map[string]*Fields{}
		}
		if f.members[name] == nil {
			f.members[name] = &Fields{}
		}
		f.members[name].merge(m)
	}
}

// String shows the fields read, for tests and debugging.
func (f *Fields) String() string {
	switch {
	case f == nil || (!f.whole && len(f.members) == 0):
		return "{}"
	case f.whole:
		return "*"
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range sortedKeys(f.members) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%s", name, f.members[name])
	}
	b.WriteByte('}')
	return b.String()
}

// CELReads are the fields of object and oldObject that a set of rules read.
type CELReads struct {
	object, oldObject Fields
}

// ReadsOf merges what the CEL rules of policies read. Pass every policy
// that Evaluate may apply with the result.
func ReadsOf(policies []*Compiled) *CELReads {
	r := &CELReads{}
	for _, c := range policies {
		if c == nil {
			continue
		}
		for _, rule := range c.cel {
			r.object.merge(&rule.reads.object)
			r.oldObject.merge(&rule.reads.oldObject)
		}
	}
	return r
}

// readsOf works out what one checked expression reads of object and
// oldObject.
func readsOf(e ast.Expr) CELReads {
	var r CELReads
	collectReads(e, &r)
	return r
}

// collectReads walks e. A chain of field selections (and constant string
// indexes) from a variable reads the value at its end, whole; a variable
// used any other way is read whole.
func collectReads(e ast.Expr, r *CELReads) {
	if root, path, ok := fieldChain(e); ok {
		if f := r.fieldsOf(root); f != nil {
			f.add(path)
		}
		return
	}
	switch e.Kind() {
	case ast.SelectKind:
		collectReads(e.AsSelect().Operand(), r)
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			collectReads(c.Target(), r)
		}
		for _, a := range c.Args() {
			collectReads(a, r)
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		for _, x := range []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
			collectReads(x, r)
		}
	case ast.ListKind:
		for _, x := range e.AsList().Elements() {
			collectReads(x, r)
		}
	case ast.MapKind:
		for _, x := range e.AsMap().Entries() {
			if x.Kind() == ast.MapEntryKind {
				collectReads(x.AsMapEntry().Key(), r)
				collectReads(x.AsMapEntry().Value(), r)
			}
		}
	case ast.StructKind:
		for _, x := range e.AsStruct().Fields() {
			if x.Kind() == ast.StructFieldKind {
				collectReads(x.AsStructField().Value(), r)
			}
		}
	}
}

// fieldOf returns the Fields a variable's reads go to, or nil for other
// identifiers.
func (r *CELReads) fieldsOf(name string) *Fields {
	switch name {
	case celObject:
		return &r.object
	case celOldObject:
		return &r.oldObject
	}
	return nil
}

// fieldChain matches e = ident(.name | ["name"] | .?name | [?"name"])*.
// An identifier shadowed by a comprehension variable of the same name is
// still taken for the variable, which can only make more be read.
func fieldChain(e ast.Expr) (root string, path []string, ok bool) {
	switch e.Kind() {
	case ast.IdentKind:
		return e.AsIdent(), nil, true
	case ast.SelectKind:
		s := e.AsSelect()
		root, path, ok = fieldChain(s.Operand())
		return root, append(path, s.FieldName()), ok
	case ast.CallKind:
		c := e.AsCall()
		switch c.FunctionName() {
		case operators.Index, operators.OptIndex, operators.OptSelect:
		default:
			return "", nil, false
		}
		if len(c.Args()) != 2 || c.Args()[1].Kind() != ast.LiteralKind {
			return "", nil, false
		}
		name, isString := c.Args()[1].AsLiteral().(types.String)
		if !isString {
			return "", nil, false
		}
		root, path, ok = fieldChain(c.Args()[0])
		return root, append(path, string(name)), ok
	}
	return "", nil, false
}
