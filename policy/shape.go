package policy

import (
	"slices"

	"github.com/sluicedb/sluice/mask"
)

// ShapeKind says how a structured result value (JSON, a composite, an
// array) is built from parts that derive from different columns, so that
// masking can mask only the parts that hold protected data and keep the
// value valid for its type.
type ShapeKind uint8

const (
	ShapeNone ShapeKind = iota
	// ShapeJSON is a JSON document that is one leaf: Parts[0] (to_json(x)
	// of a scalar). With no Parts it is a JSON document whose parts are
	// unknown: masked as a whole, as a JSON string.
	ShapeJSON
	// ShapeJSONObject is a JSON object; Parts are its keys (Output.Name).
	// A key the analysis did not expect is masked as a whole.
	ShapeJSONObject
	// ShapeJSONMap is a JSON object whose keys are data (json_object_agg):
	// every value is Parts[0]; the keys' sources are Output.Steer.
	ShapeJSONMap
	// ShapeJSONArray is a JSON array: element i is Parts[i], or the last
	// part for elements past the parts (one part: every element).
	ShapeJSONArray
	// ShapeRecord is a PostgreSQL composite value (a whole-row reference,
	// ROW(…)): field i is Parts[i]; a record of another width is masked as
	// a whole.
	ShapeRecord
	// ShapeArray is a one-dimensional PostgreSQL array, elements placed as
	// for ShapeJSONArray.
	ShapeArray
)

func (k ShapeKind) String() string {
	switch k {
	case ShapeJSON:
		return "json"
	case ShapeJSONObject:
		return "json object"
	case ShapeJSONMap:
		return "json map"
	case ShapeJSONArray:
		return "json array"
	case ShapeRecord:
		return "record"
	case ShapeArray:
		return "array"
	}
	return "scalar"
}

// IsJSON reports a JSON shape.
func (k ShapeKind) IsJSON() bool { return k >= ShapeJSON && k <= ShapeJSONArray }

// PartAt is the part that element or field i of a shaped value follows.
func PartAt[T any](parts []T, i int) (T, bool) {
	var zero T
	if len(parts) == 0 {
		return zero, false
	}
	return parts[min(i, len(parts)-1)], true
}

// shaped returns o with a shape whose parts are parts; o's sources become
// the parts' sources.
func shaped(name string, kind ShapeKind, parts []Output) Output {
	o := Output{Name: name, Shape: kind, Parts: parts}
	for _, p := range parts {
		o.Sources = union(o.Sources, p.Sources...)
	}
	return o
}

// withShape gives result column o the structure sh its expression builds.
// What the expression reads stays the authority: anything the parts do
// not account for masks the value whole (outside).
func withShape(o, sh Output) Output {
	sh.Name, sh.Bare = o.Name, false
	sh.Sources = union(slices.Clone(o.Sources), sh.Sources...)
	return sh
}

// unshaped drops o's structure: its value is one whole.
func unshaped(o Output) Output {
	o.Shape, o.Parts, o.Steer = ShapeNone, nil, nil
	return o
}

// asJSON is the JSON value PostgreSQL's to_json makes of o: a record's
// fields become keys (a repeated name becomes one key holding both), an
// array's elements elements, a scalar one leaf.
func asJSON(o Output) Output {
	switch o.Shape {
	case ShapeRecord:
		var parts []Output
		for _, p := range o.Parts {
			p = leafOf(asJSON(p))
			if i := slices.IndexFunc(parts, func(q Output) bool { return q.Name == p.Name }); i >= 0 {
				parts[i] = mergeParts(parts[i], p)
				continue
			}
			parts = append(parts, p)
		}
		j := shaped(o.Name, ShapeJSONObject, parts)
		j.Steer = o.Steer
		return j
	case ShapeArray:
		parts := make([]Output, len(o.Parts))
		for i, p := range o.Parts {
			parts[i] = leafOf(asJSON(p))
		}
		j := shaped(o.Name, ShapeJSONArray, parts)
		j.Steer = o.Steer
		return j
	case ShapeNone:
		leaf := unshaped(o)
		return Output{Name: o.Name, Sources: o.Sources, Shape: ShapeJSON, Parts: []Output{leaf}}
	}
	return o
}

// leafOf is the part a JSON shape's value stands in when placed as one
// key's value or one element: a ShapeJSON leaf is its only part.
func leafOf(o Output) Output {
	if o.Shape == ShapeJSON && len(o.Parts) == 1 && len(o.Steer) == 0 {
		p := o.Parts[0]
		p.Name = o.Name
		return p
	}
	return o
}

// mergeParts is one part holding both a's and b's values (a repeated key,
// the branches of a UNION): same structure stays, else the whole.
func mergeParts(a, b Output) Output {
	m := a
	m.Sources = union(slices.Clone(a.Sources), b.Sources...)
	m.Steer = union(slices.Clone(a.Steer), b.Steer...)
	m.Spread = a.Spread || b.Spread
	m.Bare = bareUnion(a, b)
	if a.Shape != b.Shape || len(a.Parts) != len(b.Parts) || a.Shape == ShapeNone {
		return unshaped(m)
	}
	m.Parts = make([]Output, len(a.Parts))
	for i := range a.Parts {
		if a.Shape == ShapeJSONObject && a.Parts[i].Name != b.Parts[i].Name {
			return unshaped(m)
		}
		m.Parts[i] = mergeParts(a.Parts[i], b.Parts[i])
	}
	return m
}

// outside are the sources of a shaped value that none of its parts
// accounts for: an ORDER BY or FILTER inside an aggregate, a key computed
// from data. If one of them is protected the value is masked as a whole —
// as it is for one of Output.Steer, which a part may read too.
func outside(o Output) []Column {
	var in []Column
	for _, p := range o.Parts {
		in = union(in, p.Sources...)
	}
	var extra []Column
	for _, c := range o.Sources {
		if !slices.Contains(in, c) {
			extra = append(extra, c)
		}
	}
	return extra
}

// maskShapes maps shapes to the masker's.
var maskShapes = map[ShapeKind]mask.Shape{
	ShapeNone: mask.Scalar, ShapeJSON: mask.JSONLeaf, ShapeJSONObject: mask.JSONObject, ShapeJSONMap: mask.JSONMap,
	ShapeJSONArray: mask.JSONArray, ShapeRecord: mask.Record, ShapeArray: mask.Array,
}

// Rule compiles a masked column's plan for the masker.
func (m MaskedColumn) Rule() *mask.Rule {
	r := mask.NewRule(m.Name, m.Strategy, m.Typed)
	if m.Shape == ShapeNone {
		return r
	}
	parts := make([]*mask.Rule, len(m.Parts))
	for i, p := range m.Parts {
		parts[i] = p.Rule()
	}
	return r.WithParts(maskShapes[m.Shape], parts)
}
