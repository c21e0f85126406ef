package mask

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// Shape is how a structured value is built from parts.
type Shape uint8

const (
	Scalar     Shape = iota
	JSONLeaf         // a JSON document that is one value: Parts[0]; no parts: a whole JSON value
	JSONObject       // keys by name (Rule.Name); a key not in the rule is masked whole
	JSONMap          // every key's value is Parts[0]
	JSONArray        // element i is Parts[i], or Parts[0] for all when there is one
	Record           // a composite value: field i is Parts[i]
	Array            // a one-dimensional array, elements as JSONArray
)

// Typed is the mask for a value whose type is not text.
type Typed string

const (
	TypedNull   Typed = "null"   // SQL NULL (JSON null)
	TypedZero   Typed = "zero"   // 0, 1970-01-01, the nil UUID, false
	TypedBucket Typed = "bucket" // the year of a date, the leading digit of a number
	TypedToken  Typed = "token"  // a deterministic UUID or number (keyed)
)

// ParseTyped validates a typed mask name.
func ParseTyped(s string) (Typed, error) {
	switch t := Typed(s); t {
	case TypedNull, TypedZero, TypedBucket, TypedToken:
		return t, nil
	case "":
		return TypedNull, nil
	}
	return "", fmt.Errorf("unknown typed mask %q (null, zero, bucket, token)", s)
}

// Rule is the compiled plan for one value or one part of a structured
// value. A nil Rule, or one with Mask unset, shows the value as it is
// (its Parts may still mask inside it).
type Rule struct {
	Name     string // JSON key or field name
	Mask     bool   // the part derives from protected data
	Strategy Strategy
	N        int
	Typed    Typed
	Shape    Shape
	Parts    []*Rule
	keys     map[string]*Rule
}

// NewRule validates a strategy and its typed mask. An invalid one masks
// as redact and NULL: the gateway fails closed.
func NewRule(name, strategy, typed string) *Rule {
	r := &Rule{Name: name, Mask: strategy != "", Strategy: Redact, Typed: TypedNull}
	if strategy != "" {
		if s, n, err := ParseStrategy(strategy); err == nil {
			r.Strategy, r.N = s, n
		}
	}
	if t, err := ParseTyped(typed); err == nil {
		r.Typed = t
	}
	return r
}

// WithParts sets a structured rule's shape and parts.
func (r *Rule) WithParts(s Shape, parts []*Rule) *Rule {
	r.Shape, r.Parts = s, parts
	if s == JSONObject {
		r.keys = make(map[string]*Rule, len(parts))
		for _, p := range parts {
			r.keys[p.Name] = p
		}
	}
	return r
}

// PartAt is the rule for element i; ok is false past a positional rule's
// parts (the value is not what the analysis saw).
func (r *Rule) PartAt(i int) (*Rule, bool) {
	switch {
	case len(r.Parts) == 1:
		return r.Parts[0], true
	case i < len(r.Parts):
		return r.Parts[i], true
	}
	return nil, false
}

// key is the rule for an object key; ok is false for a key the analysis
// did not expect.
func (r *Rule) key(k []byte) (*Rule, bool) {
	if r.Shape == JSONMap {
		return r.Parts[0], len(r.Parts) == 1
	}
	p, ok := r.keys[string(k)]
	return p, ok
}

// Whole is the rule as a leaf: the value masked as one whole.
func (r *Rule) Whole() *Rule {
	if r.Shape == Scalar {
		return r
	}
	w := *r
	w.Shape, w.Parts, w.keys, w.Mask = Scalar, nil, nil, true
	return &w
}

// Structured reports a rule that masks inside its value.
func (r *Rule) Structured() bool {
	return r != nil && r.Mask && r.Shape != Scalar && (r.Shape != JSONLeaf || len(r.Parts) == 1) && !slices.Contains(r.Parts, nil)
}

// ASCIIKeys reports whether every JSON object key the rule names, at any
// depth, is ASCII: such a key is the same bytes in every ASCII-safe
// encoding.
func (r *Rule) ASCIIKeys() bool {
	if r == nil {
		return true
	}
	for _, p := range r.Parts {
		if r.Shape == JSONObject {
			for i := 0; i < len(p.Name); i++ {
				if p.Name[i] >= utf8.RuneSelf {
					return false
				}
			}
		}
		if !p.ASCIIKeys() {
			return false
		}
	}
	return true
}
