package policy

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
)

// A session's own relations. The catalog reader's connection cannot see
// another session's temporary tables, and a relation created earlier in
// the same statement string is not in any snapshot yet. So each session
// keeps the relations it created on top of the target's snapshot: their
// columns, and the lineage of their values (the columns they were filled
// from), so that data cannot be laundered out of masking through a
// temporary table. The set changes only as the server confirms: a
// statement's CommandComplete applies its effects, and the transaction's
// outcome (ReadyForQuery) keeps or undoes them.

// SessionRelation is a relation a session created.
type SessionRelation struct {
	Schema, Name string
	Columns      []string
	// Lineage is, per column, what its values derive from: the outputs of
	// the query that filled it, and any values written into it since.
	Lineage []Output
	// OnCommitDrop: dropped when the transaction that created it commits.
	OnCommitDrop bool
	// Temporary: only this session sees it (PostgreSQL pg_temp, MySQL
	// TEMPORARY); the others the catalog shows once read again.
	Temporary bool
}

func (r *SessionRelation) key() string { return r.Schema + "." + r.Name }

// relSet is an immutable set of session relations; every change makes a
// new one with a new version, unique across sessions, so analyses cached
// by catalog generation never mix two sessions' relations.
type relSet struct {
	version uint64
	rels    map[string]*SessionRelation // "schema.name"
	// uncertain: relations whose existence or columns sluice cannot tell
	// (a savepoint was rolled back, an ALTER changed them); statements
	// naming them are refused.
	uncertain map[string]bool
}

var relVersions atomic.Uint64

func (s *relSet) empty() bool { return s == nil || (len(s.rels) == 0 && len(s.uncertain) == 0) }

func (s *relSet) clone() *relSet {
	n := &relSet{version: relVersions.Add(1), rels: map[string]*SessionRelation{}, uncertain: map[string]bool{}}
	if s != nil {
		maps.Copy(n.rels, s.rels)
		maps.Copy(n.uncertain, s.uncertain)
	}
	return n
}

// sessionCatalog is a snapshot with a session's relations on top.
type sessionCatalog struct {
	base Catalog
	set  *relSet
	gen  uint64 // of base and set together, computed once
}

// withRelations puts set on top of cat (cat itself when set is empty).
func withRelations(cat Catalog, set *relSet) Catalog {
	if set.empty() || cat == nil {
		return cat
	}
	if sc, ok := cat.(*sessionCatalog); ok {
		merged := sc.set.clone()
		maps.Copy(merged.rels, set.rels)
		maps.Copy(merged.uncertain, set.uncertain)
		cat, set = sc.base, merged
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", cat.Generation(), set.version)
	return &sessionCatalog{base: cat, set: set, gen: h.Sum64()}
}

// Columns implements Catalog.
func (c *sessionCatalog) Columns(schema, rel string) ([]string, bool) {
	if r, ok := c.set.rels[schema+"."+rel]; ok {
		return r.Columns, true
	}
	if c.set.uncertain[schema+"."+rel] {
		return nil, true
	}
	return c.base.Columns(schema, rel)
}

// SchemasWith implements Catalog: the session's temporary schema holds
// its relations too.
func (c *sessionCatalog) SchemasWith(rel string) []string {
	out := slices.Clone(c.base.SchemasWith(rel))
	for k := range c.set.rels {
		if r := c.set.rels[k]; r.Name == rel && !slices.Contains(out, r.Schema) {
			out = append(out, r.Schema)
		}
	}
	for k := range c.set.uncertain {
		if s, n, ok := strings.Cut(k, "."); ok && n == rel && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Generation implements Catalog.
func (c *sessionCatalog) Generation() uint64 { return c.gen }

// Uncertain reports a relation statements may not name (see relSet).
func (c *sessionCatalog) Uncertain(schema, rel string) bool {
	return c.set.uncertain[schema+"."+rel]
}

// SessionLineage is the lineage of a session relation's columns.
func (c *sessionCatalog) SessionLineage(schema, rel string) ([]Output, bool) {
	r, ok := c.set.rels[schema+"."+rel]
	if !ok {
		return nil, false
	}
	return r.Lineage, true
}

// The base snapshot's optional knowledge passes through; a session
// relation has no views, rules or parents of its own.

func (c *sessionCatalog) ColumnTags(schema, rel, col string) map[string]string {
	if tg, ok := c.base.(ColumnTagger); ok {
		return tg.ColumnTags(schema, rel, col)
	}
	return nil
}

func (c *sessionCatalog) ViewDefinition(schema, rel string) (string, bool) {
	if _, ok := c.set.rels[schema+"."+rel]; ok {
		return "", false
	}
	if d, ok := c.base.(ViewDefiner); ok {
		return d.ViewDefinition(schema, rel)
	}
	return "", false
}

func (c *sessionCatalog) Rules(schema, rel string) []string {
	if _, ok := c.set.rels[schema+"."+rel]; ok {
		return nil
	}
	if d, ok := c.base.(RuleDefiner); ok {
		return d.Rules(schema, rel)
	}
	return nil
}

func (c *sessionCatalog) UserFunction(name string) bool {
	u, ok := c.base.(interface{ UserFunction(string) bool })
	return ok && u.UserFunction(name)
}

func (c *sessionCatalog) Builtin(name string) (byte, bool) {
	if b, ok := c.base.(builtinCatalog); ok {
		return b.Builtin(name)
	}
	return 0, false
}

func (c *sessionCatalog) Ancestors(schema, rel string) []string {
	if in, ok := c.base.(interface {
		Ancestors(schema, rel string) []string
	}); ok {
		return in.Ancestors(schema, rel)
	}
	return nil
}

// sessionRelationOf is the session's relation o (an empty one if o is not
// the session's).
func sessionRelationOf(cat Catalog, o Object) SessionRelation {
	if sc, ok := cat.(*sessionCatalog); ok {
		if r, ok := sc.set.rels[o.Schema+"."+o.Name]; ok {
			return *r
		}
	}
	return SessionRelation{}
}

// isSessionRelation reports a relation of the session's own (or created
// earlier in the string), followed or uncertain.
func isSessionRelation(cat Catalog, o Object) bool {
	sc, ok := cat.(*sessionCatalog)
	if !ok {
		return false
	}
	k := o.Schema + "." + o.Name
	_, ok = sc.set.rels[k]
	return ok || sc.set.uncertain[k]
}

// sessionLineage gives a session relation's columns (cols, each its own
// source) the lineage of the values they hold.
func sessionLineage(cat Catalog, obj Object, cols []Output) []Output {
	sl, ok := cat.(interface {
		SessionLineage(schema, rel string) ([]Output, bool)
	})
	if !ok {
		return cols
	}
	lin, ok := sl.SessionLineage(obj.Schema, obj.Name)
	if !ok {
		return cols
	}
	return throughView(obj, cols, lin)
}

// uncertainRelation refuses a relation whose state sluice lost track of.
func uncertainRelation(cat Catalog, obj Object) error {
	u, ok := cat.(interface{ Uncertain(schema, rel string) bool })
	if ok && u.Uncertain(obj.Schema, obj.Name) {
		return fmt.Errorf("sluice cannot tell what %s.%s holds now (a savepoint was rolled back or it was altered since it was created): create it again under another name", obj.Schema, obj.Name)
	}
	return nil
}

// relTracker follows a session's relations as the server confirms the
// statements that change them.
type relTracker struct {
	// everySchema: follow every relation, not only the session's own
	// (within one statement string, before the catalog can show them).
	everySchema bool
	committed   *relSet // as of the last transaction end
	current     *relSet // with the open transaction's changes
	failed      bool    // an error or a ROLLBACK since the last ReadyForQuery
	rolled      bool    // a ROLLBACK tag since the last ReadyForQuery
}

// apply applies one effect of a statement the server completed.
func (t *relTracker) apply(e Effect) {
	switch e.Kind {
	case EffectCreateRel:
		r := e.Relation
		if r == nil {
			return
		}
		// A relation only this session sees, or one the catalog reader
		// cannot see before the transaction that made it commits.
		if _, ok := t.current.rels[r.key()]; ok && e.Hold {
			return // IF NOT EXISTS of one that exists: the server kept it
		}
		n := t.current.clone()
		n.rels[r.key()] = r
		delete(n.uncertain, r.key())
		t.current = n
	case EffectDropRel:
		k := e.Value + "." + e.Name
		if _, ok := t.current.rels[k]; !ok && !t.current.uncertain[k] {
			return
		}
		n := t.current.clone()
		delete(n.rels, k)
		delete(n.uncertain, k)
		t.current = n
	case EffectFeedRel:
		k := e.Value + "." + e.Name
		r, ok := t.current.rels[k]
		if !ok || len(e.Sources) == 0 {
			return
		}
		fed := *r
		fed.Lineage = make([]Output, len(r.Columns))
		for i := range fed.Lineage {
			var before Output
			if i < len(r.Lineage) {
				before = r.Lineage[i]
			}
			fed.Lineage[i] = Output{Name: r.Columns[i], Sources: union(slices.Clone(before.Sources), e.Sources...)}
		}
		n := t.current.clone()
		n.rels[k] = &fed
		t.current = n
	case EffectUncertainRel:
		// Hold: a session relation's new name (RENAME).
		k := e.Value + "." + e.Name
		if _, ok := t.current.rels[k]; !ok && !t.everySchema && !sessionSchema(e.Value) && !e.Hold {
			return // not a relation of the session's
		}
		n := t.current.clone()
		delete(n.rels, k)
		n.uncertain[k] = true
		t.current = n
	case EffectDiscardTemp, EffectDiscardAll:
		if t.current.empty() {
			return
		}
		n := t.current.clone()
		for k, r := range n.rels {
			if r.Temporary {
				delete(n.rels, k)
			}
		}
		clear(n.uncertain) // what sluice lost track of is gone too
		t.current = n
	}
}

// sessionSchema reports the schemas whose relations only the session
// sees.
func sessionSchema(schema string) bool { return schema == "pg_temp" }

func (t *relTracker) serverError() { t.failed = true }

func (t *relTracker) commandTag(tag string) {
	if tag == "ROLLBACK" {
		t.failed, t.rolled = true, true
	}
}

// ready follows ReadyForQuery: idle after a failure or a rollback undoes
// the transaction's changes; idle otherwise keeps them (dropping ON COMMIT
// DROP relations); a ROLLBACK that left a transaction open (to a
// savepoint) makes everything changed in it uncertain.
// committed reports that relations of the catalog's changed at commit
// (the catalog is to be read again: it shows them now).
func (t *relTracker) ready(status byte) (committed bool) {
	switch status {
	case 'I':
		if t.failed {
			t.current = t.committed
		} else if t.current != t.committed {
			n := t.current
			for k, r := range t.current.rels {
				if r.OnCommitDrop || !r.Temporary {
					if n == t.current {
						n = t.current.clone()
					}
					delete(n.rels, k)
					committed = committed || !r.Temporary
				}
			}
			t.current = n
		}
		t.committed = t.current
		t.failed, t.rolled = false, false
	case 'T':
		if t.rolled && t.current != t.committed {
			n := t.current.clone()
			for k, r := range t.current.rels {
				if c, ok := t.committed.rels[k]; !ok || c != r {
					delete(n.rels, k)
					n.uncertain[k] = true
				}
			}
			for k := range t.committed.rels {
				if _, ok := t.current.rels[k]; !ok {
					n.uncertain[k] = true
				}
			}
			t.current = n
		}
		t.failed, t.rolled = false, false
	}
	return committed
}
