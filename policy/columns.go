package policy

import (
	"slices"
	"strings"

	cedargo "github.com/cedar-policy/cedar-go"

	"github.com/sluicedb/sluice/cedar"
)

// columnRequests are the select requests on each column a statement reads
// from a relation it names (results, filters, joins, values written
// elsewhere), so that policies can refuse a column, not only mask it.
// Columns a view reads on its owner's behalf are left to the view's own.
func columnRequests(st Statement) []Request {
	named := map[Object]bool{}
	for _, r := range st.Requests {
		if r.Object.Kind == ObjectTable {
			named[Object{Kind: ObjectTable, Schema: r.Object.Schema, Name: r.Object.Name}] = true
		}
	}
	var out []Request
	seen := map[Column]bool{}
	add := func(c Column) {
		if c.Name == "*" || seen[c] || !named[Object{Kind: ObjectTable, Schema: c.Schema, Name: c.Table}] {
			return
		}
		seen[c] = true
		out = append(out, Request{Action: "select", Object: Object{Kind: ObjectColumn, Schema: c.Schema, Name: c.Table, Column: c.Name}})
	}
	for _, o := range st.Outputs {
		for _, c := range o.Sources {
			add(c)
		}
	}
	for _, c := range st.Uses {
		add(c)
	}
	return out
}

// columnUID returns a column's Cedar entity, placed in its table, with the
// tags that apply to its data.
func (a *Authorizer) columnUID(c Column, ents *overlay) cedargo.EntityUID {
	table := a.resource(Object{Kind: ObjectTable, Schema: c.Schema, Name: c.Table}, ents)
	uid := cedargo.NewEntityUID(cedar.TypeColumn, cedargo.String(a.target.Name+"/"+c.Schema+"."+c.Table+"."+c.Name))
	if _, ok := ents.local[uid]; ok {
		return uid
	}
	ents.ensure(uid, table)
	tags := a.columnTags(c, ents.base)
	if len(tags) > 0 {
		e := ents.local[uid]
		rm := cedargo.RecordMap{}
		for k, v := range tags {
			rm[cedargo.String(k)] = cedargo.String(v)
		}
		e.Tags = cedargo.NewRecord(rm)
		ents.local[uid] = e
	}
	return uid
}

// columnTags gathers what is known of a column's data: tags declared in
// entity files under this target or any target on the same database, tags
// from column comments (and from the tables it inherits from), and
// sluice's own tags for system catalogs. A tag set by several keeps the
// first value found in that order.
func (a *Authorizer) columnTags(c Column, base cedargo.EntityMap) map[string]string {
	tags := map[string]string{}
	merge := func(m map[string]string) {
		for k, v := range m {
			if _, ok := tags[k]; !ok {
				tags[k] = v
			}
		}
	}
	// The column's table and the tables it inherits from (a partition is
	// its parent's data).
	tables := []string{c.Schema + "." + c.Table}
	if a.catalog != nil {
		if in, ok := a.catalog.Current().(interface {
			Ancestors(schema, rel string) []string
		}); ok {
			tables = append(tables, in.Ancestors(c.Schema, c.Table)...)
		}
	}
	for _, tbl := range tables {
		for _, t := range append([]string{a.target.Name}, a.target.Aliases...) {
			if e, ok := base[cedargo.NewEntityUID(cedar.TypeColumn, cedargo.String(t+"/"+tbl+"."+c.Name))]; ok {
				for k, v := range e.Tags.All() {
					if s, ok := v.(cedargo.String); ok {
						merge(map[string]string{string(k): string(s)})
					}
				}
			}
		}
	}
	if a.catalog != nil {
		if tg, ok := a.catalog.Current().(ColumnTagger); ok {
			merge(tg.ColumnTags(c.Schema, c.Table, c.Name))
		}
	}
	merge(builtinTags(a.target.Protocol, c))
	return tags
}

// Tags sluice itself puts on system catalog columns. Default policies
// refuse both to agents (no-credentials) and mask them wherever they flow.
const (
	// TagCredential marks password hashes and connection secrets.
	TagCredential = "credential"
	// TagSessionText marks other sessions' statement text: agents share
	// a database login, so it shows other agents' literals.
	TagSessionText = "session_text"
)

// systemColumns are the catalog columns holding credentials or other
// sessions' statements, by dialect: "schema.table.column", lower case; a
// "*" schema matches any (extensions install their views anywhere).
var systemColumns = map[string]map[string]string{
	"postgres": {
		"pg_catalog.pg_authid.rolpassword":       TagCredential,
		"pg_catalog.pg_shadow.passwd":            TagCredential,
		"pg_catalog.pg_user_mappings.umoptions":  TagCredential,
		"pg_catalog.pg_user_mapping.umoptions":   TagCredential,
		"pg_catalog.pg_subscription.subconninfo": TagCredential,
		"pg_catalog.pg_stat_activity.query":      TagSessionText,
		"*.pg_stat_statements.query":             TagSessionText,
	},
	"mysql": {
		"mysql.user.password":                                                TagCredential,
		"mysql.user.authentication_string":                                   TagCredential,
		"mysql.global_priv.priv":                                             TagCredential,
		"mysql.servers.password":                                             TagCredential,
		"information_schema.processlist.info":                                TagSessionText,
		"information_schema.processlist.info_binary":                         TagSessionText,
		"performance_schema.threads.processlist_info":                        TagSessionText,
		"performance_schema.events_statements_current.sql_text":              TagSessionText,
		"performance_schema.events_statements_history.sql_text":              TagSessionText,
		"performance_schema.events_statements_history_long.sql_text":         TagSessionText,
		"performance_schema.events_statements_summary_by_digest.digest_text": TagSessionText,
		"performance_schema.prepared_statements_instances.sql_text":          TagSessionText,
		"mysql.general_log.argument":                                         TagSessionText,
		"mysql.slow_log.sql_text":                                            TagSessionText,
	},
}

func builtinTags(dialect string, c Column) map[string]string {
	cols := systemColumns[dialect]
	if cols == nil {
		return nil
	}
	rest := strings.ToLower(c.Table + "." + c.Name)
	tag, ok := cols[strings.ToLower(c.Schema)+"."+rest]
	if !ok {
		tag, ok = cols["*."+rest]
	}
	if !ok {
		return nil
	}
	return map[string]string{tag: "yes"}
}

// declaredColumns lists the columns entity files declare for a table under
// this target and its aliases (their tags matter behind a wildcard).
func (a *Authorizer) declaredColumns(schema, table string, set *cedar.Set) []Column {
	var out []Column
	for _, t := range append([]string{a.target.Name}, a.target.Aliases...) {
		prefix := t + "/" + schema + "." + table + "."
		for uid := range set.Entities {
			if uid.Type == cedar.TypeColumn && strings.HasPrefix(string(uid.ID), prefix) {
				c := Column{Schema: schema, Table: table, Name: strings.TrimPrefix(string(uid.ID), prefix)}
				if !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// keepsPart reports strategies that let part of a value through.
func keepsPart(strategy string) bool {
	return strategy == "email" || strings.HasPrefix(strategy, "partial")
}
