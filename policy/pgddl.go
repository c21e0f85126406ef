package policy

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The statements that change what relations exist and what they hold, as
// the analysis follows them for the statements after (the session's
// relations: sessioncat.go), and the classes of the statements the
// analyzer has no case of its own for.

// followInString is the catalog the statements after one see, within one
// statement string: the relations it created, dropped or filled are on top
// (the catalog cannot show them yet).
func followInString(cat Catalog, effects []Effect) Catalog {
	if cat == nil || !relationEffects(effects) {
		return cat
	}
	t := relTracker{current: &relSet{}, everySchema: true}
	if sc, ok := cat.(*sessionCatalog); ok {
		cat, t.current = sc.base, sc.set
	}
	for _, e := range effects {
		t.apply(e)
	}
	return withRelations(cat, t.current)
}

func relationEffects(es []Effect) bool {
	return slices.ContainsFunc(es, func(e Effect) bool {
		switch e.Kind {
		case EffectCreateRel, EffectDropRel, EffectFeedRel, EffectUncertainRel, EffectDiscardTemp, EffectDiscardAll:
			return true
		}
		return false
	})
}

// feeds records the values a write puts into a relation, so that a
// session relation's columns derive from them (EffectFeedRel). Every
// column of the statement's uses counts, for every column written:
// coarse, but never looser than the values.
func (a *collector) feeds() {
	if len(a.st.Uses) == 0 {
		return
	}
	for _, r := range a.st.Requests {
		switch r.Action {
		case "insert", "update", "merge":
			if r.Object.Kind == ObjectTable {
				a.st.Effects = append(a.st.Effects, Effect{Kind: EffectFeedRel, Value: r.Object.Schema, Name: r.Object.Name, Sources: slices.Clone(a.st.Uses)})
			}
		}
	}
}

// created records the relation a statement creates, with its columns and
// their lineage, for the statements after it (EffectCreateRel).
func (a *collector) created(obj Object, names []string, lineage []Output, ifNotExists, onCommitDrop, temporary bool) {
	if obj.Name == "" {
		return
	}
	r := &SessionRelation{Schema: obj.Schema, Name: obj.Name, OnCommitDrop: onCommitDrop, Temporary: temporary}
	for i, n := range names {
		r.Columns = append(r.Columns, n)
		o := Output{Name: n, Bare: true}
		if i < len(lineage) {
			o.Sources, o.Bare = lineage[i].Sources, lineage[i].Bare
		} else if lineage != nil {
			o.Sources, o.Bare = sourcesOf(lineage), false
		}
		r.Lineage = append(r.Lineage, o)
	}
	a.st.Effects = append(a.st.Effects, Effect{Kind: EffectCreateRel, Relation: r, Hold: ifNotExists})
}

// outputNames are the column names a query's outputs give a relation,
// renamed by an explicit column list.
func outputNames(outs []Output, rename []*pg.Node) []string {
	names := make([]string, len(outs))
	for i, o := range outs {
		names[i] = o.Name
		if i < len(rename) {
			names[i] = rename[i].GetString_().GetSval()
		}
	}
	return names
}

// alterColumns follows what ALTER TABLE does to the relation's columns
// (ADD, DROP, ALTER … TYPE; the rest leave them), so statements after it —
// in the same string, or in the transaction before the catalog can see
// it — resolve them as the server will. A subcommand sluice does not
// follow makes the relation uncertain.
func (a *pgAnalyzer) alterColumns(at *pg.AlterTableStmt) {
	o, err := a.table(at.Relation)
	if err != nil || a.cat == nil {
		return
	}
	uncertain := Effect{Kind: EffectUncertainRel, Value: o.Schema, Name: o.Name}
	names, ok := a.cat.Columns(o.Schema, o.Name)
	if !ok {
		a.st.Effects = append(a.st.Effects, uncertain)
		return
	}
	lineage, _ := a.relationColumns(o)
	cols := slices.Clone(lineage)
	if len(cols) != len(names) {
		a.st.Effects = append(a.st.Effects, uncertain)
		return
	}
	for _, c := range at.Cmds {
		cmd := c.GetAlterTableCmd()
		if cmd == nil {
			a.st.Effects = append(a.st.Effects, uncertain)
			return
		}
		switch cmd.Subtype {
		case pg.AlterTableType_AT_AddColumn:
			cd := cmd.Def.GetColumnDef()
			if cd == nil {
				a.st.Effects = append(a.st.Effects, uncertain)
				return
			}
			if slices.ContainsFunc(cols, func(c Output) bool { return c.Name == cd.Colname }) {
				continue // ADD COLUMN IF NOT EXISTS of one it has (or the server errs)
			}
			cols = append(cols, Output{Name: cd.Colname, Sources: []Column{{Schema: o.Schema, Table: o.Name, Name: cd.Colname}}, Bare: true})
		case pg.AlterTableType_AT_DropColumn:
			cols = slices.DeleteFunc(cols, func(c Output) bool { return c.Name == cmd.Name })
		case pg.AlterTableType_AT_AlterColumnType:
			// The values are converted (USING may compute them): derived.
			for i := range cols {
				if cols[i].Name == cmd.Name {
					cols[i].Bare = false
				}
			}
		case pg.AlterTableType_AT_ColumnDefault, pg.AlterTableType_AT_DropNotNull, pg.AlterTableType_AT_SetNotNull,
			pg.AlterTableType_AT_AddConstraint, pg.AlterTableType_AT_DropConstraint, pg.AlterTableType_AT_SetStatistics,
			pg.AlterTableType_AT_SetStorage, pg.AlterTableType_AT_AddIndex, pg.AlterTableType_AT_ValidateConstraint,
			pg.AlterTableType_AT_ChangeOwner, pg.AlterTableType_AT_ClusterOn, pg.AlterTableType_AT_DropCluster,
			pg.AlterTableType_AT_SetRelOptions, pg.AlterTableType_AT_ResetRelOptions, pg.AlterTableType_AT_ReplicaIdentity,
			pg.AlterTableType_AT_EnableTrig, pg.AlterTableType_AT_DisableTrig, pg.AlterTableType_AT_EnableTrigAll,
			pg.AlterTableType_AT_DisableTrigAll, pg.AlterTableType_AT_EnableTrigUser, pg.AlterTableType_AT_DisableTrigUser,
			pg.AlterTableType_AT_EnableRowSecurity, pg.AlterTableType_AT_DisableRowSecurity,
			pg.AlterTableType_AT_ForceRowSecurity, pg.AlterTableType_AT_NoForceRowSecurity, pg.AlterTableType_AT_SetLogged,
			pg.AlterTableType_AT_SetUnLogged, pg.AlterTableType_AT_AddIdentity, pg.AlterTableType_AT_SetIdentity,
			pg.AlterTableType_AT_DropIdentity, pg.AlterTableType_AT_CookedColumnDefault, pg.AlterTableType_AT_SetCompression:
			// Columns and values as they were.
		default:
			a.st.Effects = append(a.st.Effects, uncertain)
			return
		}
	}
	names = names[:0:0]
	for _, c := range cols {
		names = append(names, c.Name)
	}
	// Redefined in place: a relation of the session's keeps being one; a
	// catalog relation is followed until the catalog shows the change.
	a.st.Effects = append(a.st.Effects, Effect{Kind: EffectCreateRel, Relation: &SessionRelation{
		Schema: o.Schema, Name: o.Name, Columns: names, Lineage: cols, Temporary: sessionSchema(o.Schema) || sessionRelationOf(a.cat, o).Temporary}})
}

// altered records an ALTER of a relation; a relation of the session's own
// is no longer known column by column.
func (a *pgAnalyzer) altered(rv *pg.RangeVar) error {
	if err := a.rel("alter", rv); err != nil {
		return err
	}
	if o, err := a.table(rv); err == nil {
		a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: o.Schema, Name: o.Name})
	}
	return nil
}

// pgStatementClasses classify the statements the analyzer has no case of
// its own for: a request of action on the database as a whole. Those that
// reach beyond the database (other servers, the server's files, code
// loaded into it, every session's settings) are administrative.
var pgStatementClasses = map[string]struct{ kind, action string }{
	// Objects in the database: DDL.
	"AlterCollationStmt": {"alter", "alter"}, "AlterDomainStmt": {"alter", "alter"},
	"AlterObjectDependsStmt": {"alter", "alter"}, "AlterObjectSchemaStmt": {"alter", "alter"},
	"AlterOperatorStmt": {"alter", "alter"}, "AlterTypeStmt": {"alter", "alter"}, "AlterEnumStmt": {"alter", "alter"},
	"AlterSeqStmt": {"alter", "alter"}, "AlterStatsStmt": {"alter", "alter"}, "AlterFunctionStmt": {"alter", "alter"},
	"AlterOpFamilyStmt": {"alter", "alter"}, "AlterTsdictionaryStmt": {"alter", "alter"},
	"AlterTsconfigurationStmt": {"alter", "alter"}, "CommentStmt": {"alter", "alter"},
	"CreateSeqStmt": {"create", "create"}, "CreateStatsStmt": {"create", "create"}, "CreateFunctionStmt": {"create", "create"},
	"CreateTrigStmt": {"create", "create"}, "CreateDomainStmt": {"create", "create"}, "CreateEnumStmt": {"create", "create"},
	"CreateRangeStmt": {"create", "create"}, "CompositeTypeStmt": {"create", "create"}, "DefineStmt": {"create", "create"},
	"CreateOpClassStmt": {"create", "create"}, "CreateOpFamilyStmt": {"create", "create"}, "CreateCastStmt": {"create", "create"},
	"CreateConversionStmt": {"create", "create"}, "CreateTransformStmt": {"create", "create"},
	"CreateForeignTableStmt": {"create", "create"}, "RuleStmt": {"create", "create"},
	"ImportForeignSchemaStmt": {"create", "create"},
	"RefreshMatViewStmt":      {"maintenance", "alter"}, "ClusterStmt": {"maintenance", "alter"},
	"ReindexStmt": {"maintenance", "alter"},
	// Who may do what: grants.
	"CreatePolicyStmt": {"grant", "grant"}, "AlterPolicyStmt": {"grant", "grant"}, "SecLabelStmt": {"grant", "grant"},
	// The server beyond this database, other servers, code loaded into
	// the server, every session's settings.
	"CreatedbStmt": {"admin", "alter_system"}, "DropdbStmt": {"admin", "alter_system"},
	"AlterDatabaseStmt": {"admin", "alter_system"}, "AlterDatabaseSetStmt": {"admin", "alter_system"},
	"AlterDatabaseRefreshCollStmt": {"admin", "alter_system"},
	"CreateTableSpaceStmt":         {"admin", "alter_system"}, "DropTableSpaceStmt": {"admin", "alter_system"},
	"AlterTableSpaceOptionsStmt": {"admin", "alter_system"}, "AlterTableMoveAllStmt": {"admin", "alter_system"},
	"CreateExtensionStmt": {"admin", "alter_system"}, "AlterExtensionStmt": {"admin", "alter_system"},
	"AlterExtensionContentsStmt": {"admin", "alter_system"}, "LoadStmt": {"admin", "alter_system"},
	"CreatePlangStmt": {"admin", "alter_system"}, "CreateAmStmt": {"admin", "alter_system"},
	"CreateEventTrigStmt": {"admin", "alter_system"}, "AlterEventTrigStmt": {"admin", "alter_system"},
	"CreateFdwStmt": {"admin", "alter_system"}, "AlterFdwStmt": {"admin", "alter_system"},
	"CreateForeignServerStmt": {"admin", "alter_system"}, "AlterForeignServerStmt": {"admin", "alter_system"},
	"CreateUserMappingStmt": {"admin", "alter_system"}, "AlterUserMappingStmt": {"admin", "alter_system"},
	"DropUserMappingStmt":   {"admin", "alter_system"},
	"CreatePublicationStmt": {"admin", "alter_system"}, "AlterPublicationStmt": {"admin", "alter_system"},
	"CreateSubscriptionStmt": {"admin", "alter_system"}, "AlterSubscriptionStmt": {"admin", "alter_system"},
	"DropSubscriptionStmt": {"admin", "alter_system"}, "CheckPointStmt": {"admin", "alter_system"},
	// Transaction behaviour of this session.
	"ConstraintsSetStmt": {"transaction", "transaction"},
}
