package policy

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// A MongoDB result has no columns: its documents carry fields at paths. So
// that masking follows a field wherever a pipeline moves it, the analyzer
// keeps the shape of the documents at each stage — which output paths hold
// which collections' fields — and hands the final shape to the masking
// plan as Outputs named by path (Output.Name "a.b"). Entity data tags field
// paths (Column "db.users.profile.ssn"); the paths are matched to the
// shape in AuthorizeMongo, since only the engine knows what is declared.

// mongoField is a path of the current documents and where its values come
// from.
type mongoField struct {
	path string   // "" is the whole document
	src  []Column // Name "" is a whole document of that collection
	bare bool     // the value is its source's value, unchanged (or a part of it)
}

// docShape is what the documents at one stage of a pipeline hold.
type docShape []mongoField

// mongoOpaque names an output whose fields sluice cannot follow (a stage
// outside the lineage model): if it holds a masked field, the command is
// refused.
const mongoOpaque = "$opaque"

// wholeDoc is the shape of a collection's stored documents.
func wholeDoc(t Object) docShape {
	return docShape{{src: []Column{{Schema: t.Schema, Table: t.Name}}, bare: true}}
}

// JoinPath joins MongoDB field paths ("" is the root).
func JoinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "." + b
}

// within reports whether path p is q or inside q ("" holds every path).
func within(p, q string) bool {
	return q == "" || p == q || strings.HasPrefix(p, q+".")
}

// ref is where the values a "$path" reference reads come from, as fields
// placed at out.
func (sh docShape) ref(path, out string, bare bool) docShape {
	var res docShape
	for _, f := range sh {
		switch {
		case f.path == mongoOpaque:
			// Fields sluice lost track of may be anywhere: whatever reads
			// the documents reads them.
			res = append(res, f)
		case within(path, f.path):
			// The reference reads inside f (or f itself).
			rest := strings.TrimPrefix(strings.TrimPrefix(path, f.path), ".")
			if f.path == "" {
				rest = path
			}
			src := f.src
			if f.bare {
				src = make([]Column, len(f.src))
				for i, c := range f.src {
					c.Name = JoinPath(c.Name, rest)
					src[i] = c
				}
			}
			res = append(res, mongoField{path: out, src: src, bare: bare && f.bare})
		case within(f.path, path):
			// f lies inside the value read: it moves along.
			p := out
			if bare {
				p = JoinPath(out, strings.TrimPrefix(strings.TrimPrefix(f.path, path), "."))
			}
			res = append(res, mongoField{path: p, src: f.src, bare: bare && f.bare})
		}
	}
	return res
}

// sources are every column the fields derive from.
func (sh docShape) sources() []Column {
	var out []Column
	for _, f := range sh {
		out = append(out, f.src...)
	}
	return out
}

// without drops the fields at or inside path (a field that holds path
// stays: the part removed is then masked needlessly, never shown).
func (sh docShape) without(path string) docShape {
	if normPath(path) != path {
		return sh // "a.0", "a.$": not the whole field; keep its plan
	}
	var out docShape
	for _, f := range sh {
		if f.path != "" && f.path != mongoOpaque && within(f.path, path) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// keep narrows the shape to path (an inclusion projection).
func (sh docShape) keep(path string) docShape {
	path = normPath(path)
	return sh.ref(path, path, true)
}

// exprRefs are the field paths an aggregation expression reads: "$path"
// strings, "$$ROOT" and "$$CURRENT" (the whole document, or a path in
// it); other "$$vars" are bound by the expression itself (their inputs
// are references of their own). Operators that take a field by name
// ($getField, $setField, $unsetField, on $$CURRENT unless told otherwise)
// read the whole document, as far as sluice can tell.
func exprRefs(v bsoncore.Value) []string {
	switch v.Type {
	case bsoncore.TypeString:
		if p, ok := refPath(v.StringValue()); ok {
			return []string{p}
		}
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		var out []string
		elems, _ := bsoncore.Document(v.Data).Elements()
		for _, e := range elems {
			if v.Type == bsoncore.TypeEmbeddedDocument && byName[e.Key()] {
				out = append(out, "")
			}
			out = append(out, exprRefs(e.Value())...)
		}
		return out
	}
	return nil
}

// byName are operators that read a field named by a string, or (as
// $meta's indexKey) values sluice cannot place.
var byName = map[string]bool{"$getField": true, "$setField": true, "$unsetField": true, "$meta": true}

// refPath is the document path a "$…" string reads: "$a.b" → "a.b",
// "$$ROOT" → "" (the document), "$$CURRENT.a" → "a"; false for literals and
// other variables.
func refPath(s string) (string, bool) {
	switch {
	case len(s) > 1 && s[0] == '$' && s[1] != '$':
		return normPath(s[1:]), true
	case s == "$$ROOT" || s == "$$CURRENT":
		return "", true
	case strings.HasPrefix(s, "$$ROOT."):
		return normPath(s[len("$$ROOT."):]), true
	case strings.HasPrefix(s, "$$CURRENT."):
		return normPath(s[len("$$CURRENT."):]), true
	}
	return "", false
}

// normPath is the field a path names, without array positions: "cards.0.number",
// "cards.$.number" and "cards.$[].number" all read cards.number, and a
// projection of "cards.$" returns cards.
func normPath(p string) string {
	if !strings.ContainsAny(p, "$0123456789") {
		return p
	}
	parts := strings.Split(p, ".")
	out := parts[:0]
	for _, c := range parts {
		if c == "" || c[0] == '$' || strings.Trim(c, "0123456789") == "" {
			continue
		}
		out = append(out, c)
	}
	return strings.Join(out, ".")
}

// expr is the shape an expression's value has at out: a bare "$path"
// moves the fields it reads; anything else derives one value from all.
func (sh docShape) expr(v bsoncore.Value, out string) docShape {
	if s, ok := v.StringValueOK(); ok {
		if p, isRef := refPath(s); isRef {
			return sh.ref(p, out, true)
		}
	}
	var res docShape
	for _, r := range exprRefs(v) {
		for _, f := range sh.ref(r, out, false) {
			res = append(res, mongoField{path: out, src: f.src})
		}
	}
	return res
}

// uses records every column a reference to path reads.
func (a *mongoAnalyzer) useRef(sh docShape, path string) {
	a.use(sh.ref(normPath(path), "", false).sources()...)
}

// useExpr records every column an expression reads.
func (a *mongoAnalyzer) useExpr(sh docShape, v bsoncore.Value) {
	for _, r := range exprRefs(v) {
		a.useRef(sh, r)
	}
}

// project applies a $project (or a find projection) to sh. Whether the
// server reads it as an inclusion or an exclusion turns on rules sluice
// need not mirror (nested specs, Decimal128 and fractional flags, $slice
// or $meta alone, _id as an expression): the shape is both readings at
// once. Masking a field that is not there changes nothing, so planning
// for both leaves nothing unmasked whichever the server chose.
func (a *mongoAnalyzer) project(sh docShape, spec bsoncore.Value) docShape {
	d, ok := spec.DocumentOK()
	if !ok {
		return docShape{{path: mongoOpaque, src: sh.sources()}}
	}
	var out docShape
	incl, excl := projectionMode(d)
	if incl {
		a.projectInto(sh, d, "", &out)
		out = append(out, sh.keep("_id")...)
	}
	if excl {
		// Read as an exclusion: everything but the fields set to a
		// false flag.
		rest := sh
		a.excluded(d, "", &rest)
		out = append(out, rest...)
	}
	return out
}

// projectionMode says how the server may read projection d: an inclusion,
// an exclusion, or (when its rules turn on details — nested specs, other
// numeric types, $slice, $meta or $elemMatch) either, so both are planned.
func projectionMode(d bsoncore.Document) (incl, excl bool) {
	elems, _ := d.Elements()
	plain, included := true, false
	for _, e := range elems {
		v := e.Value()
		switch v.Type {
		case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeBoolean:
			if on, _ := flag(v); on && e.Key() != "_id" {
				included = true
			}
		case bsoncore.TypeString:
			included = true // a computed field ("$ssn", or a literal)
		case bsoncore.TypeEmbeddedDocument:
			sub := v.Document()
			if !isOperatorDoc(sub) {
				plain = false
				continue
			}
			switch sub.Index(0).Key() {
			case "$slice", "$elemMatch", "$meta":
				plain = false
			default:
				included = true // an expression
			}
		default:
			plain = false
		}
	}
	if !plain {
		return true, true
	}
	return included, !included
}

// flag reads a projection value as MongoDB's truthiness of a number or
// boolean (Decimal128 and doubles included); ok is false for anything else.
func flag(v bsoncore.Value) (on, ok bool) {
	switch v.Type {
	case bsoncore.TypeBoolean:
		return v.Boolean(), true
	case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDouble:
		f, _ := v.AsFloat64OK()
		return f != 0, true
	case bsoncore.TypeDecimal128:
		h, l := v.Decimal128()
		n, _, err := bson.NewDecimal128(h, l).BigInt()
		return err != nil || n.Sign() != 0, true // NaN and infinities are true
	}
	return false, false
}

// excluded drops from *sh the fields a projection sets to a false flag.
func (a *mongoAnalyzer) excluded(d bsoncore.Document, prefix string, sh *docShape) {
	elems, _ := d.Elements()
	for _, e := range elems {
		path, v := JoinPath(prefix, e.Key()), e.Value()
		if on, isFlag := flag(v); isFlag && !on {
			*sh = sh.without(path)
		} else if sub, ok := v.DocumentOK(); ok && !isOperatorDoc(sub) {
			a.excluded(sub, path, sh)
		}
	}
}

// projectInto adds the fields of a projection read as an inclusion,
// nested specs ({a: {b: 1}}) included.
func (a *mongoAnalyzer) projectInto(sh docShape, d bsoncore.Document, prefix string, out *docShape) {
	elems, _ := d.Elements()
	for _, e := range elems {
		path, v := JoinPath(prefix, e.Key()), e.Value()
		if on, isFlag := flag(v); isFlag {
			if on {
				*out = append(*out, sh.keep(path)...)
			}
			continue
		}
		if sub, ok := v.DocumentOK(); ok && !isOperatorDoc(sub) {
			a.projectInto(sh, sub, path, out)
			continue
		}
		if sub, ok := v.DocumentOK(); ok && isOperatorDoc(sub) {
			if k := sub.Index(0).Key(); k == "$slice" || k == "$elemMatch" {
				// Projection operators narrow an array in place.
				*out = append(*out, sh.keep(path)...)
				continue
			}
		}
		*out = append(*out, sh.expr(v, path)...)
	}
}

// isOperatorDoc: the document is an expression ({$concat: …}), not a
// nested specification.
func isOperatorDoc(d bsoncore.Document) bool {
	e, err := d.IndexErr(0)
	return err == nil && strings.HasPrefix(e.Key(), "$")
}

// addFields applies $addFields / $set: each named field is replaced.
func (a *mongoAnalyzer) addFields(sh docShape, spec bsoncore.Value) docShape {
	d, ok := spec.DocumentOK()
	if !ok {
		return docShape{{path: mongoOpaque, src: sh.sources()}}
	}
	var added docShape
	var walk func(d bsoncore.Document, prefix string)
	walk = func(d bsoncore.Document, prefix string) {
		elems, _ := d.Elements()
		for _, e := range elems {
			path, v := JoinPath(prefix, e.Key()), e.Value()
			if sub, ok := v.DocumentOK(); ok && !isOperatorDoc(sub) {
				walk(sub, path)
				continue
			}
			added = append(added, sh.expr(v, path)...)
			sh = sh.without(path)
		}
	}
	walk(d, "")
	return append(sh, added...)
}

// group applies $group: _id is the key, every other field an accumulator.
func (a *mongoAnalyzer) group(sh docShape, spec bsoncore.Value) docShape {
	d, _ := spec.DocumentOK()
	elems, _ := d.Elements()
	var out docShape
	for _, e := range elems {
		if e.Key() == "_id" {
			// The key steers which documents are grouped: an inference
			// channel, like a GROUP BY.
			a.useExpr(sh, e.Value())
			out = append(out, sh.expr(e.Value(), "_id")...)
			continue
		}
		acc, ok := e.Value().DocumentOK()
		if !ok || !isOperatorDoc(acc) {
			out = append(out, sh.expr(e.Value(), e.Key())...)
			continue
		}
		op := acc.Index(0)
		switch op.Key() {
		case "$push", "$addToSet", "$first", "$last", "$min", "$max":
			// The accumulated values are the values themselves.
			out = append(out, sh.expr(op.Value(), e.Key())...)
		default:
			for _, f := range sh.expr(op.Value(), e.Key()) {
				out = append(out, mongoField{path: e.Key(), src: f.src})
			}
		}
		if sub, ok := op.Value().DocumentOK(); ok {
			// $top/$bottom/$firstN… sort and pick by fields.
			a.useExpr(sh, sub.Lookup("sortBy"))
		}
	}
	return out
}

// replaceRoot applies $replaceRoot / $replaceWith.
func (a *mongoAnalyzer) replaceRoot(sh docShape, v bsoncore.Value) docShape {
	if s, ok := v.StringValueOK(); ok {
		if p, isRef := refPath(s); isRef {
			return sh.ref(p, "", true)
		}
	}
	if d, ok := v.DocumentOK(); ok && !isOperatorDoc(d) {
		var out docShape
		a.projectInto(sh, d, "", &out)
		return out
	}
	return docShape{{path: mongoOpaque, src: sh.ref("", "", false).sources()}}
}

// outputs turns the final shape into the statement's outputs, each
// placed under prefix (findAndModify's "value").
func (a *mongoAnalyzer) outputs(sh docShape, prefix string) {
	for _, f := range sh {
		name := f.path
		if name != mongoOpaque {
			name = JoinPath(prefix, f.path)
		}
		a.st.Outputs = append(a.st.Outputs, Output{Name: name, Sources: f.src, Bare: f.bare})
	}
}

// flowsInto records that every field of sh is written somewhere the agent
// may read back unmasked ($out, $merge, a view, an update pipeline): like
// INSERT … SELECT, masked fields there need USE_MASKED.
func (a *mongoAnalyzer) flowsInto(sh docShape) {
	a.use(sh.sources()...)
}

// mongoExpand resolves the analyzer's field paths against the field paths
// entity data declares for each collection: a path that holds a declared
// field ("profile" holds "profile.ssn") or lies inside one stands for it.
func mongoExpand(st *Statement, declared func(schema, table string) []Column) {
	related := func(c Column) []Column {
		var out []Column
		for _, d := range declared(c.Schema, c.Table) {
			if within(d.Name, c.Name) || within(c.Name, d.Name) {
				out = append(out, d)
			}
		}
		return out
	}
	var uses []Column
	seen := map[Column]bool{}
	for _, u := range st.Uses {
		for _, c := range append(related(u), u) {
			if c.Name != "" && !seen[c] {
				seen[c] = true
				uses = append(uses, c)
			}
		}
	}
	st.Uses = uses
	var outs []Output
	for _, o := range st.Outputs {
		for _, s := range o.Sources {
			for _, d := range related(s) {
				name := o.Name
				if o.Bare && o.Name != mongoOpaque && within(d.Name, s.Name) {
					// The declared field sits inside the value: mask
					// just it, where it lands.
					name = JoinPath(o.Name, strings.TrimPrefix(strings.TrimPrefix(d.Name, s.Name), "."))
				}
				outs = append(outs, Output{Name: name, Sources: []Column{d}, Bare: o.Bare})
			}
		}
	}
	st.Outputs = outs
}

// moved are the fields whose values now sit somewhere other than where
// they are stored.
func (sh docShape) moved() docShape {
	var out docShape
	for _, f := range sh {
		if f.bare && len(f.src) == 1 && f.src[0].Name == f.path {
			continue
		}
		out = append(out, f)
	}
	return out
}

// useExprsIn records the fields a projection's $elemMatch filters by
// (computed fields are outputs, masked by their sources; an $elemMatch
// picks which elements return by a field's value).
func (a *mongoAnalyzer) useExprsIn(sh docShape, v bsoncore.Value) {
	a.elemMatches(sh, "", v)
}

func (a *mongoAnalyzer) elemMatches(sh docShape, prefix string, v bsoncore.Value) {
	d, ok := v.DocumentOK()
	if !ok {
		return
	}
	elems, _ := d.Elements()
	for _, e := range elems {
		path := JoinPath(prefix, e.Key())
		sub, ok := e.Value().DocumentOK()
		switch {
		case !ok:
		case !isOperatorDoc(sub):
			a.elemMatches(sh, path, e.Value())
		default:
			if m, ok := sub.Lookup("$elemMatch").DocumentOK(); ok {
				_ = a.fields(sh, path, m)
			}
		}
	}
}
