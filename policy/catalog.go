package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Column names a table column.
type Column struct {
	Schema, Table, Name string
}

func (c Column) String() string { return c.Schema + "." + c.Table + "." + c.Name }

// Output is one result column and the table columns its values derive from.
type Output struct {
	Name    string
	Sources []Column
	// Bare: each value is one source column's value as stored (the column
	// itself, aliased, passed through subqueries, or cast to text). Only a
	// bare column may keep part of its value when masked; anything derived
	// from it (reverse, substr, concatenation, aggregates) may not.
	Bare bool
	// Shape and Parts: a structured value (JSON, composite, array) and
	// what each of its keys, fields or elements derives from.
	Shape ShapeKind
	Parts []Output
	// Steer are the sources that decide a shaped value's structure rather
	// than any part's value — which rows an aggregate takes and in what
	// order (its ORDER BY, FILTER, window): if one is protected, the value
	// is masked whole, as masking parts would not hide it.
	Steer []Column
	// Spread: the output's position is uncertain, and so is every later
	// one's: it stands for a function result's columns whose number
	// sluice does not know (SELECT * over jsonb_each(…)), or begins a
	// NATURAL JOIN's columns when sluice cannot tell which it merges.
	Spread bool
}

// Catalog is what the analyzer knows of a target's schema: the relations
// and their columns. A snapshot is immutable; Generation changes whenever the
// content does, so analyses can be cached per snapshot.
type Catalog interface {
	// Columns returns a relation's columns in order.
	Columns(schema, relation string) ([]string, bool)
	// SchemasWith returns the schemas holding a relation of that name.
	SchemasWith(relation string) []string
	// Generation identifies this snapshot.
	Generation() uint64
}

// ErrUnknownRelation reports a relation the catalog does not hold. The engine
// refreshes the catalog once and analyzes again before refusing.
var ErrUnknownRelation = errors.New("relation is not in the catalog")

// UnknownRelationError is a relation the catalog does not hold, named as
// the statement wrote it (Schema empty if unqualified). It is
// ErrUnknownRelation.
type UnknownRelationError struct {
	Schema, Name string
}

func (e *UnknownRelationError) Error() string {
	return ErrUnknownRelation.Error() + ": " + e.Qualified()
}

// Qualified is the name as written: schema.name or name.
func (e *UnknownRelationError) Qualified() string {
	if e.Schema == "" {
		return e.Name
	}
	return e.Schema + "." + e.Name
}

// Is makes errors.Is(err, ErrUnknownRelation) hold.
func (e *UnknownRelationError) Is(target error) bool { return target == ErrUnknownRelation }

// systemSchemas are searched before the search_path in PostgreSQL.
var systemSchemas = []string{"pg_catalog"}

// ColumnTagger is a catalog that also knows column tags, read from the
// database's column comments (e.g. COMMENT ON COLUMN … IS 'sluice:pii=email').
// Entity files take precedence over them.
type ColumnTagger interface {
	ColumnTags(schema, relation, column string) map[string]string
}

// ParseTagComment reads sluice tags from a column comment: words of the form
// sluice:name or sluice:name=value ("sluice:pii" tags pii as "yes").
func ParseTagComment(comment string) map[string]string {
	var tags map[string]string
	for _, w := range strings.Fields(comment) {
		rest, ok := strings.CutPrefix(strings.TrimRight(w, ",;."), "sluice:")
		if !ok || rest == "" {
			continue
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			v = "yes"
		}
		if tags == nil {
			tags = map[string]string{}
		}
		tags[k] = v
	}
	return tags
}

// StaticCatalog is a fixed catalog snapshot.
type StaticCatalog struct {
	Gen       uint64
	Relations map[string][]string // "schema.relation" → columns
	// Tags are column tags from comments: "schema.relation.column" → tags.
	Tags map[string]map[string]string
	// Views are view definitions: "schema.view" → query (ViewDefiner).
	Views map[string]string
	// RuleDefs are rules on tables: "schema.table" → CREATE RULE texts.
	RuleDefs map[string][]string
	// Parents are the tables a table inherits from (partitions, INHERITS):
	// "schema.table" → "schema.parent"; their column tags apply to it.
	Parents map[string][]string
	// Functions are the names of functions outside the system schemas: a
	// call to one of these names is never taken for a builtin.
	Functions map[string]bool
	// Builtins are pg_catalog's functions by name with their volatility
	// ('i', 's', 'v'; the most volatile overload's), from pg_proc.
	Builtins map[string]byte
	byName   map[string][]string // relation → schemas, built by NewStaticCatalog
}

// NewStaticCatalog indexes relations ("schema.relation" → columns).
func NewStaticCatalog(gen uint64, relations map[string][]string) *StaticCatalog {
	c := &StaticCatalog{Gen: gen, Relations: relations, byName: map[string][]string{}}
	for k := range relations {
		if s, r, ok := strings.Cut(k, "."); ok {
			c.byName[r] = append(c.byName[r], s)
		}
	}
	for _, v := range c.byName {
		slices.Sort(v)
	}
	return c
}

// Columns implements Catalog.
func (c *StaticCatalog) Columns(schema, rel string) ([]string, bool) {
	cols, ok := c.Relations[schema+"."+rel]
	return cols, ok
}

// SchemasWith implements Catalog.
func (c *StaticCatalog) SchemasWith(rel string) []string {
	if c.byName != nil {
		return c.byName[rel]
	}
	var out []string
	for k := range c.Relations {
		if s, r, ok := strings.Cut(k, "."); ok && r == rel {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// ColumnTags implements ColumnTagger: the column's own tags, and those of
// the same column in the tables it inherits from (a partition is the data
// of its parent).
func (c *StaticCatalog) ColumnTags(schema, rel, col string) map[string]string {
	tags := c.Tags[schema+"."+rel+"."+col]
	seen := map[string]bool{}
	queue := slices.Clone(c.Parents[schema+"."+rel])
	for len(queue) > 0 && len(seen) < 64 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		for k, v := range c.Tags[p+"."+col] {
			if tags == nil || tags[k] == "" {
				tags = maps.Clone(tags)
				if tags == nil {
					tags = map[string]string{}
				}
				tags[k] = v
			}
		}
		queue = append(queue, c.Parents[p]...)
	}
	return tags
}

// Ancestors lists the tables schema.rel inherits from, nearest first.
func (c *StaticCatalog) Ancestors(schema, rel string) []string {
	var out []string
	queue := slices.Clone(c.Parents[schema+"."+rel])
	for len(queue) > 0 && len(out) < 64 {
		p := queue[0]
		queue = queue[1:]
		if slices.Contains(out, p) {
			continue
		}
		out = append(out, p)
		queue = append(queue, c.Parents[p]...)
	}
	return out
}

// ViewDefinition implements ViewDefiner.
func (c *StaticCatalog) ViewDefinition(schema, rel string) (string, bool) {
	d, ok := c.Views[schema+"."+rel]
	return d, ok
}

// Rules implements RuleDefiner.
func (c *StaticCatalog) Rules(schema, rel string) []string { return c.RuleDefs[schema+"."+rel] }

// UserFunction reports whether a function of that name exists outside the
// system schemas.
func (c *StaticCatalog) UserFunction(name string) bool { return c.Functions[name] }

// Builtin reports a pg_catalog function and its volatility.
func (c *StaticCatalog) Builtin(name string) (byte, bool) {
	v, ok := c.Builtins[name]
	return v, ok
}

// Generation implements Catalog.
func (c *StaticCatalog) Generation() uint64 { return c.Gen }

// resolveRelation finds the schema of a relation reference. An unqualified
// name must resolve here exactly as in the database: sluice refuses
// search_path changes, system schemas come first, and a name that exists in
// more than one other schema is refused as ambiguous rather than guessed.
func resolveRelation(cat Catalog, schema, rel string) (string, error) {
	if schema != "" {
		if cat != nil {
			if _, ok := cat.Columns(schema, rel); !ok {
				return "", &UnknownRelationError{Schema: schema, Name: rel}
			}
		}
		return schema, nil
	}
	if cat == nil {
		return "public", nil
	}
	found := cat.SchemasWith(rel)
	if slices.Contains(found, "pg_temp") {
		// The session's temporary schema is searched first, before
		// pg_catalog (sluice pins search_path, so it stays first).
		return "pg_temp", nil
	}
	for _, sys := range systemSchemas {
		if slices.Contains(found, sys) {
			if len(found) == 1 {
				return sys, nil
			}
			// pg_catalog comes first unless a search_path names it later,
			// so a user relation named like a system one is refused.
			return "", fmt.Errorf("unqualified name %q exists in schemas %s: qualify it with its schema", rel, strings.Join(found, ", "))
		}
	}
	switch len(found) {
	case 0:
		return "", &UnknownRelationError{Name: rel}
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("unqualified name %q exists in schemas %s: qualify it with its schema", rel, strings.Join(found, ", "))
}

// maxWork bounds the query blocks one analysis may visit: nested recursive
// CTEs re-analyze their bodies, and a crafted statement must not make that
// exponential. Past it the statement is refused as too complex.
const maxWork = 20000

var errTooComplex = errors.New("statement is too complex for sluice to analyze")
