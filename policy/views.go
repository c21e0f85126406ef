package policy

import "strings"

// maxViewDepth bounds views defined over views.
const maxViewDepth = 16

// ViewDefiner is a catalog that knows view definitions (PostgreSQL views
// and materialized views, MySQL views), so lineage goes through them: a
// view over tagged columns is masked as those columns are.
type ViewDefiner interface {
	// ViewDefinition returns the query of view schema.rel, every relation
	// in it qualified with its schema.
	ViewDefinition(schema, rel string) (string, bool)
}

// RuleDefiner is a catalog that knows the rules on PostgreSQL tables
// (other than views' own): a write to such a table also runs the rules'
// actions, and what they return reaches the client.
type RuleDefiner interface {
	// Rules returns CREATE RULE statements (pg_get_ruledef) on schema.rel.
	Rules(schema, rel string) []string
}

// systemSchema reports schemas whose views sluice does not expand: their
// columns carry sluice's own tags (builtinTags) instead, and they read
// server internals no catalog describes.
func systemSchema(schema string) bool {
	switch strings.ToLower(schema) {
	case "pg_catalog", "information_schema", "mysql", "performance_schema":
		return true
	}
	return false
}

func viewDefinition(cat Catalog, obj Object) (string, bool) {
	d, ok := cat.(ViewDefiner)
	if !ok || systemSchema(obj.Schema) {
		return "", false
	}
	return d.ViewDefinition(obj.Schema, obj.Name)
}

// throughView gives a view's columns (cols, each its own source) the
// lineage of the definition's outputs, position by position. Should the
// two disagree in number, every column derives from everything the
// definition returns.
func throughView(view Object, cols, outs []Output) []Output {
	if len(cols) != len(outs) {
		all := sourcesOf(outs)
		for i := range cols {
			cols[i].Sources = union(cols[i].Sources, all...)
			cols[i].Bare = false
		}
		return cols
	}
	for i := range cols {
		cols[i].Sources = union(cols[i].Sources, outs[i].Sources...)
		cols[i].Bare = outs[i].Bare
	}
	return cols
}
