package policy

// EffectKind names a change a statement makes to session state that sluice
// keeps a view of: cursors and SQL-level prepared statements (whose names
// share the wire protocol's namespaces), the default database, and the
// settings that change how the server reads SQL. A wire session applies an
// effect only once the server confirms the statement that makes it.
type EffectKind int

const (
	// EffectDeclare opens cursor Name (Hold: WITH HOLD), with the
	// statement's masking plan.
	EffectDeclare EffectKind = iota + 1
	// EffectFetch returns rows of cursor Name: they are masked with the
	// plan the cursor was declared with.
	EffectFetch
	// EffectMove moves cursor Name; it returns no rows.
	EffectMove
	// EffectClose closes cursor Name, or every cursor when Name is "".
	EffectClose
	// EffectPrepare creates the SQL-level prepared statement Name.
	EffectPrepare
	// EffectDeallocate drops prepared statement Name, or every named one
	// when Name is "".
	EffectDeallocate
	// EffectDiscardAll drops every cursor and named prepared statement and
	// resets the session's settings (PostgreSQL DISCARD ALL).
	EffectDiscardAll
	// EffectUse makes Name the default database (MySQL USE).
	EffectUse
	// EffectSQLMode sets the session's sql_mode to Value (MySQL), which
	// changes how later statements are lexed.
	EffectSQLMode
	// EffectCharset sets the client character set to Value (MySQL).
	EffectCharset
	// EffectCreateRel creates Relation (Hold: IF NOT EXISTS). Only the
	// session sees a temporary one; the others the catalog shows once read
	// again, and the statements after it in the same string see it at once.
	EffectCreateRel
	// EffectDropRel drops relation Value.Name.
	EffectDropRel
	// EffectFeedRel writes values derived from Sources into relation
	// Value.Name: a session relation's columns then derive from them too.
	EffectFeedRel
	// EffectUncertainRel: sluice no longer knows relation Value.Name's
	// columns (ALTER): statements naming it are refused.
	EffectUncertainRel
	// EffectDiscardTemp drops the session's temporary relations (DISCARD
	// TEMP; DISCARD ALL does too).
	EffectDiscardTemp
)

// Effect is one change to session state a statement makes.
type Effect struct {
	Kind  EffectKind
	Name  string
	Value string
	Hold  bool
	// Relation is what EffectCreateRel creates.
	Relation *SessionRelation
	// Sources are the columns EffectFeedRel's values derive from.
	Sources []Column
}

// effects returns each statement's effects, in order.
func effectsOf(stmts []Statement) [][]Effect {
	var out [][]Effect
	any := false
	for _, st := range stmts {
		out = append(out, st.Effects)
		any = any || len(st.Effects) > 0
	}
	if !any {
		return nil
	}
	return out
}
