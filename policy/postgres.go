package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// AnalyzePostgres parses sql with PostgreSQL's own grammar (libpg_query) and
// reports every (action, object) pair of every statement in it, and, when a
// catalog is given, the lineage of every result column and the columns used
// in predicates. cat may be nil: relations then resolve to "public" and
// columns are not traced.
func AnalyzePostgres(sql string, cat Catalog) Analysis {
	tree, err := pg.Parse(sql)
	if err != nil {
		return Analysis{Err: fmt.Errorf("cannot parse statement: %w", err)}
	}
	var a Analysis
	for _, raw := range tree.Stmts {
		st, err := analyzePGStatement(raw.Stmt, cat)
		if err != nil {
			return Analysis{Err: err}
		}
		a.Statements = append(a.Statements, st)
		if len(tree.Stmts) > 1 {
			cat = followInString(cat, st.Effects)
		}
	}
	return a
}

// pgAnalyzer collects the requests of one statement.
type pgAnalyzer struct {
	cat Catalog
	collector
	assigned map[*pg.RangeVar]bool // relations already accounted for
	work     *int                  // query blocks analyzed, shared with nested analyses
	views    map[Object]bool       // views being traced (a definition's analysis)
	// lockAll: a row-locking clause without OF locks every table read.
	lockAll bool
}

func analyzePGStatement(n *pg.Node, cat Catalog) (Statement, error) {
	return analyzePGStatementWork(n, cat, new(int))
}

func analyzePGStatementWork(n *pg.Node, cat Catalog, work *int) (Statement, error) {
	a := &pgAnalyzer{cat: cat, assigned: map[*pg.RangeVar]bool{}, work: work}
	a.st.Lineage = cat != nil
	if err := a.top(n); err != nil {
		return Statement{}, err
	}
	if err := a.walk(n); err != nil {
		return Statement{}, err
	}
	if cat != nil {
		a.feeds()
	}
	if a.lockAll {
		a.lockReads()
	}
	return a.st, nil
}

// table resolves a relation reference against the catalog.
func (a *pgAnalyzer) table(rv *pg.RangeVar) (Object, error) {
	schema, err := resolveRelation(a.cat, rv.Schemaname, rv.Relname)
	if err != nil {
		return Object{}, err
	}
	obj := Object{Kind: ObjectTable, Schema: schema, Name: rv.Relname}
	return obj, uncertainRelation(a.cat, obj)
}

// rel records action on a relation.
func (a *pgAnalyzer) rel(action string, rv *pg.RangeVar) error {
	if rv == nil {
		return nil
	}
	a.assigned[rv] = true
	o, err := a.table(rv)
	if err != nil {
		return err
	}
	a.add(action, o)
	return nil
}

// newRel records action on a relation a statement creates: it need not exist.
func (a *pgAnalyzer) newRel(action string, rv *pg.RangeVar) error {
	_, err := a.newRelObject(action, rv)
	return err
}

func (a *pgAnalyzer) newRelObject(action string, rv *pg.RangeVar) (Object, error) {
	if rv == nil {
		return Object{}, nil
	}
	a.assigned[rv] = true
	schema := rv.Schemaname
	if schema == "" {
		schema = "public"
		if rv.Relpersistence == "t" {
			schema = "pg_temp"
		}
	}
	if schema == "pg_temp" && a.cat != nil && slices.ContainsFunc(a.cat.SchemasWith(rv.Relname), func(s string) bool { return s != "pg_temp" }) {
		// The session's temporary schema is searched first: a temporary
		// relation of an existing name would stand in for it unseen.
		return Object{}, fmt.Errorf("a temporary relation named %q would shadow the existing %s: choose another name", rv.Relname, rv.Relname)
	}
	obj := Object{Kind: ObjectTable, Schema: schema, Name: rv.Relname}
	a.add(action, obj)
	return obj, nil
}

var target = Object{Kind: ObjectTarget}

// top classifies the statement by its top-level node.
func (a *pgAnalyzer) top(n *pg.Node) error {
	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt:
		a.st.Kind = "select"
		var into Object
		if ic := s.SelectStmt.IntoClause; ic != nil {
			a.st.Kind = "select_into"
			var err error
			if into, err = a.newRelObject("create", ic.Rel); err != nil {
				return err
			}
		}
		outs, err := a.selectStmt(s.SelectStmt, nil)
		if err != nil {
			return err
		}
		if ic := s.SelectStmt.IntoClause; ic != nil {
			a.use(sourcesOf(outs)...) // the values flow into the new table
			a.created(into, outputNames(outs, ic.ColNames), outs, false, ic.OnCommit == pg.OnCommitAction_ONCOMMIT_DROP, sessionSchema(into.Schema))
		} else {
			a.st.Outputs = outs
		}
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt:
		a.st.Kind = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", n.Node), "*pg_query.Node_"), "Stmt"))
		outs, err := a.query(n, nil)
		a.st.Outputs = outs
		return err
	case *pg.Node_MergeStmt:
		a.st.Kind = "merge"
		return a.merge(s.MergeStmt)
	case *pg.Node_TruncateStmt:
		a.st.Kind = "truncate"
		for _, r := range s.TruncateStmt.Relations {
			if err := a.rel("truncate", r.GetRangeVar()); err != nil {
				return err
			}
		}
	case *pg.Node_CreateStmt:
		a.st.Kind = "create"
		cs := s.CreateStmt
		obj, err := a.newRelObject("create", cs.Relation)
		if err != nil {
			return err
		}
		var names []string
		known := len(cs.InhRelations) == 0 && cs.OfTypename == nil && cs.Partbound == nil
		for _, el := range cs.TableElts {
			switch {
			case el.GetColumnDef() != nil:
				names = append(names, el.GetColumnDef().Colname)
			case el.GetTableLikeClause() != nil:
				known = false // LIKE copies columns sluice would have to look up
			}
		}
		if known {
			a.created(obj, names, nil, cs.IfNotExists, cs.Oncommit == pg.OnCommitAction_ONCOMMIT_DROP, sessionSchema(obj.Schema))
		} else if sessionSchema(obj.Schema) {
			a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: obj.Schema, Name: obj.Name})
		}
	case *pg.Node_CreateTableAsStmt:
		a.st.Kind = "create"
		ctas := s.CreateTableAsStmt
		obj, err := a.newRelObject("create", ctas.Into.GetRel())
		if err != nil {
			return err
		}
		outs, err := a.query(ctas.Query, nil)
		if err != nil {
			return err
		}
		if ctas.Objtype != pg.ObjectType_OBJECT_MATVIEW {
			// The values flow into the new table: an inference channel
			// unless use_masked; the table's columns keep their lineage
			// while sluice knows it (the session's relations).
			a.use(sourcesOf(outs)...)
		}
		a.created(obj, outputNames(outs, ctas.Into.GetColNames()), outs, ctas.IfNotExists, ctas.Into.GetOnCommit() == pg.OnCommitAction_ONCOMMIT_DROP, sessionSchema(obj.Schema))
	case *pg.Node_ViewStmt:
		a.st.Kind = "create"
		vs := s.ViewStmt
		obj, err := a.newRelObject("create", vs.View)
		if err != nil {
			return err
		}
		// What the view returns is what its query reads, for the
		// statements after it (a view in the catalog is read as its
		// definition).
		sub, err := analyzePGStatementWork(vs.Query, a.cat, a.work)
		if err != nil || !sub.Lineage {
			// Later statements may not read it until the catalog shows it.
			a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: obj.Schema, Name: obj.Name})
			return nil
		}
		a.created(obj, outputNames(sub.Outputs, vs.Aliases), sub.Outputs, false, false, sessionSchema(obj.Schema))
	case *pg.Node_IndexStmt:
		a.st.Kind = "create"
		return a.rel("create", s.IndexStmt.Relation)
	case *pg.Node_CreateSchemaStmt:
		a.st.Kind = "create"
		a.add("create", Object{Kind: ObjectSchema, Name: s.CreateSchemaStmt.Schemaname})
	case *pg.Node_AlterTableStmt:
		a.st.Kind = "alter"
		at := s.AlterTableStmt
		if at.Objtype == pg.ObjectType_OBJECT_TYPE {
			// ALTER TYPE … ADD/DROP/ALTER ATTRIBUTE: a composite type, not
			// a relation the catalog lists.
			a.add("alter", target)
			a.assignAll(n)
			return nil
		}
		if err := a.rel("alter", at.Relation); err != nil {
			return err
		}
		a.alterColumns(at)
	case *pg.Node_RenameStmt:
		a.st.Kind = "alter"
		rs := s.RenameStmt
		if rs.Relation != nil {
			if err := a.altered(rs.Relation); err != nil {
				return err
			}
			if rs.Subname == "" && rs.Newname != "" {
				// The relation under its new name: what it holds is
				// sluice's to know no longer (a temporary table renamed
				// like a catalog table would stand in for it).
				if o, err := a.table(rs.Relation); err == nil {
					a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: o.Schema, Name: rs.Newname, Hold: isSessionRelation(a.cat, o)})
				}
			}
			return nil
		}
		a.add("alter", target)
	case *pg.Node_DropStmt:
		a.st.Kind = "drop"
		a.drop(s.DropStmt)
	case *pg.Node_GrantStmt, *pg.Node_GrantRoleStmt, *pg.Node_AlterDefaultPrivilegesStmt,
		*pg.Node_CreateRoleStmt, *pg.Node_AlterRoleStmt, *pg.Node_AlterRoleSetStmt, *pg.Node_DropRoleStmt,
		*pg.Node_ReassignOwnedStmt, *pg.Node_DropOwnedStmt, *pg.Node_AlterOwnerStmt:
		a.st.Kind = "grant"
		a.add("grant", target)
		a.assignAll(n) // the objects granted on are not read
		if _, ok := s.(*pg.Node_DropOwnedStmt); ok {
			// DROP OWNED drops the session's temporary tables too.
			a.st.Effects = append(a.st.Effects, Effect{Kind: EffectDiscardTemp})
		}
	case *pg.Node_VariableSetStmt:
		a.st.Kind = "set"
		a.add(setAction(s.VariableSetStmt.Name), target)
		a.setting(s.VariableSetStmt)
	case *pg.Node_VariableShowStmt:
		a.st.Kind = "show"
		a.add("show", target)
	case *pg.Node_TransactionStmt:
		a.st.Kind = "transaction"
		a.add("transaction", target)
	case *pg.Node_AlterSystemStmt:
		a.st.Kind = "alter_system"
		a.add("alter_system", target)
	case *pg.Node_CopyStmt:
		a.st.Kind = "copy"
		return a.copy(s.CopyStmt)
	case *pg.Node_ExplainStmt:
		// EXPLAIN ANALYZE runs the statement; plain EXPLAIN does not, but it
		// still reveals the plan: both need what the statement needs.
		a.st.Kind = "explain"
		inner, err := analyzePGStatementWork(s.ExplainStmt.Query, a.cat, a.work)
		if err != nil {
			return err
		}
		for _, r := range inner.Requests {
			a.add(r.Action, r.Object)
		}
		a.use(inner.Uses...)
		a.use(sourcesOf(inner.Outputs)...)
		a.assignAll(n)
	case *pg.Node_DoStmt:
		a.st.Kind = "do"
		a.add("execute_dynamic", target)
		a.assignAll(n)
	case *pg.Node_ExecuteStmt:
		a.st.Kind = "execute"
		a.add("execute_dynamic", target)
	case *pg.Node_PrepareStmt:
		// PREPARE stores a statement for EXECUTE, which is refused as
		// dynamic SQL unless allowed; what it would run is checked here too.
		// Its name joins the protocol's prepared statements.
		a.st.Kind = "prepare"
		inner, err := analyzePGStatementWork(s.PrepareStmt.Query, a.cat, a.work)
		if err != nil {
			return err
		}
		for _, r := range inner.Requests {
			a.add(r.Action, r.Object)
		}
		a.st.Settings = append(a.st.Settings, inner.Settings...)
		a.st.Effects = append(a.st.Effects, Effect{Kind: EffectPrepare, Name: s.PrepareStmt.Name})
		a.assignAll(n)
	case *pg.Node_DeclareCursorStmt:
		// A cursor reads what its query reads; FETCH returns those rows
		// later, masked with this statement's plan, which the session keeps
		// with the cursor.
		c := s.DeclareCursorStmt
		if c.Query.GetSelectStmt() == nil {
			return fmt.Errorf("sluice does not understand a cursor over %T", c.Query.Node)
		}
		if err := a.top(c.Query); err != nil {
			return err
		}
		if a.st.Kind != "select" {
			return fmt.Errorf("sluice does not understand a cursor over a %s", a.st.Kind)
		}
		a.st.Kind = "declare"
		a.st.Effects = append(a.st.Effects, Effect{Kind: EffectDeclare, Name: c.Portalname, Hold: c.Options&cursorOptHold != 0})
	case *pg.Node_FetchStmt:
		// FETCH and MOVE read only what the cursor's DECLARE was decided
		// for; the session refuses a cursor it does not know.
		f := s.FetchStmt
		a.st.Kind, a.st.Effects = "fetch", []Effect{{Kind: EffectFetch, Name: f.Portalname}}
		if f.Ismove {
			a.st.Kind, a.st.Effects[0].Kind = "move", EffectMove
		}
	case *pg.Node_ClosePortalStmt:
		a.st.Kind = "close"
		a.st.Effects = []Effect{{Kind: EffectClose, Name: s.ClosePortalStmt.Portalname}}
	case *pg.Node_ListenStmt, *pg.Node_UnlistenStmt:
		a.st.Kind = "listen"
		a.add("set", target)
	case *pg.Node_NotifyStmt:
		// NOTIFY is pg_notify(): it reaches other sessions.
		a.st.Kind = "notify"
		a.add("call", Object{Kind: ObjectFunction, Name: "pg_notify"})
	case *pg.Node_DeallocateStmt:
		a.st.Kind = "set"
		a.add("set", target)
		name := s.DeallocateStmt.Name
		if s.DeallocateStmt.Isall {
			name = ""
		}
		a.st.Effects = []Effect{{Kind: EffectDeallocate, Name: name}}
	case *pg.Node_DiscardStmt:
		a.st.Kind = "set"
		a.add("set", target)
		switch s.DiscardStmt.Target {
		case pg.DiscardMode_DISCARD_ALL:
			a.st.Effects = []Effect{{Kind: EffectDiscardAll}}
		case pg.DiscardMode_DISCARD_TEMP:
			a.st.Effects = []Effect{{Kind: EffectDiscardTemp}}
		}
	case *pg.Node_CallStmt:
		a.st.Kind = "call"
		a.add("call", Object{Kind: ObjectFunction, Name: funcName(s.CallStmt.Funccall)})
	case *pg.Node_LockStmt:
		a.st.Kind = "lock"
		for _, r := range s.LockStmt.Relations {
			if err := a.rel("lock", r.GetRangeVar()); err != nil {
				return err
			}
		}
	case *pg.Node_VacuumStmt:
		a.st.Kind = "maintenance"
		a.add("alter", target)
		a.assignAll(n)
	default:
		if n.Node == nil {
			return errors.New("empty statement node")
		}
		name := strings.TrimPrefix(fmt.Sprintf("%T", n.Node), "*pg_query.Node_")
		c, ok := pgStatementClasses[name]
		if !ok {
			return fmt.Errorf("sluice does not understand statements of type %s", name)
		}
		a.st.Kind = c.kind
		a.add(c.action, target)
		a.assignAll(n)
	}
	return nil
}

func (a *pgAnalyzer) assignAll(n *pg.Node) {
	visit(n.ProtoReflect(), func(m proto.Message) {
		if rv, ok := m.(*pg.RangeVar); ok {
			a.assigned[rv] = true
		}
	})
}

// setting records the setting a SET or RESET changes.
func (a *pgAnalyzer) setting(v *pg.VariableSetStmt) {
	st := Setting{Name: strings.ToLower(v.Name)}
	switch v.Kind {
	case pg.VariableSetKind_VAR_SET_DEFAULT, pg.VariableSetKind_VAR_RESET:
		st.Default = true
	case pg.VariableSetKind_VAR_RESET_ALL:
		st.Name, st.Default = "all", true
	case pg.VariableSetKind_VAR_SET_VALUE:
		var vals []string
		for _, arg := range v.Args {
			val, ok := pgConstText(arg)
			if !ok {
				st.Computed = true
				break
			}
			vals = append(vals, val)
		}
		if !st.Computed {
			st.Value = strings.Join(vals, ", ")
		}
	default: // SET … FROM CURRENT, SET TRANSACTION …
		st.Computed = true
	}
	a.st.Settings = append(a.st.Settings, st)
}

// setConfig records the setting a set_config(name, value, is_local) call
// changes; a name or value sluice cannot read is Computed.
func (a *pgAnalyzer) setConfig(fc *pg.FuncCall) {
	st := Setting{Computed: true}
	if len(fc.Args) >= 1 {
		if name, ok := pgConstText(fc.Args[0]); ok {
			st.Name = strings.ToLower(strings.TrimSpace(name))
			if len(fc.Args) >= 2 {
				if v, ok := pgConstText(fc.Args[1]); ok {
					st.Value, st.Computed = v, false
				}
			}
		}
	}
	a.st.Settings = append(a.st.Settings, st)
}

// pgConstText is the text of a constant (a literal, possibly cast).
func pgConstText(n *pg.Node) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	c := n.GetAConst()
	if c == nil || c.Isnull {
		return "", false
	}
	switch {
	case c.GetIval() != nil:
		return strconv.FormatInt(int64(c.GetIval().Ival), 10), true
	case c.GetFval() != nil:
		return c.GetFval().Fval, true
	case c.GetSval() != nil:
		return c.GetSval().Sval, true
	case c.GetBoolval() != nil:
		return strconv.FormatBool(c.GetBoolval().Boolval), true
	}
	return "", false
}

// setAction maps SET name to its action: settings that change the session's
// authority or how names resolve are administrative.
func setAction(name string) string {
	switch strings.ToLower(name) {
	case "role", "session_authorization":
		return "set_role"
	case "search_path":
		return "set_search_path"
	}
	return "set"
}

func (a *pgAnalyzer) drop(d *pg.DropStmt) {
	switch d.RemoveType {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_SEQUENCE:
		for _, o := range d.Objects {
			var parts []string
			for _, item := range o.GetList().GetItems() {
				parts = append(parts, item.GetString_().GetSval())
			}
			switch len(parts) {
			case 1:
				schema, err := resolveRelation(a.cat, "", parts[0])
				if err != nil {
					schema = "public" // DROP IF EXISTS of nothing; decided as public
				}
				a.add("drop", Object{Kind: ObjectTable, Schema: schema, Name: parts[0]})
				a.st.Effects = append(a.st.Effects, Effect{Kind: EffectDropRel, Value: schema, Name: parts[0]})
			case 2:
				a.add("drop", Object{Kind: ObjectTable, Schema: parts[0], Name: parts[1]})
				a.st.Effects = append(a.st.Effects, Effect{Kind: EffectDropRel, Value: parts[0], Name: parts[1]})
			default:
				a.add("drop", target)
			}
		}
	case pg.ObjectType_OBJECT_SCHEMA:
		for _, o := range d.Objects {
			name := o.GetString_().GetSval()
			a.add("drop", Object{Kind: ObjectSchema, Name: name})
			if strings.HasPrefix(strings.ToLower(name), "pg_temp") {
				// The session's temporary schema under its own name
				// (pg_temp_N): its relations go with it.
				a.st.Effects = append(a.st.Effects, Effect{Kind: EffectDiscardTemp})
			}
		}
	default:
		a.add("drop", target)
	}
}

func (a *pgAnalyzer) copy(c *pg.CopyStmt) error {
	a.st.CopyFormat = "text"
	a.st.CopyIn = c.IsFrom && c.Filename == "" && !c.IsProgram
	for _, o := range c.Options {
		de := o.GetDefElem()
		if de == nil || !strings.EqualFold(de.Defname, "format") {
			// DELIMITER, NULL, HEADER, ENCODING, QUOTE…: the rows are not
			// the tab-separated text sluice masks field by field.
			a.st.CopyOptions = true
			continue
		}
		a.st.CopyFormat = strings.ToLower(de.Arg.GetString_().GetSval())
		if a.st.CopyFormat == "" {
			a.st.CopyFormat = "unknown"
		}
	}
	switch {
	case c.IsProgram:
		a.add("copy_program", target)
	case c.Filename != "" && c.IsFrom:
		a.add("read_server_file", target)
	case c.Filename != "":
		a.add("write_server_file", target)
	}
	if c.Query != nil {
		inner, err := analyzePGStatementWork(c.Query, a.cat, a.work)
		if err != nil {
			return err
		}
		for _, r := range inner.Requests {
			a.add(r.Action, r.Object)
		}
		a.use(inner.Uses...)
		a.st.Outputs = inner.Outputs
		a.assignAll(c.Query)
		return nil
	}
	if c.Relation == nil {
		return nil
	}
	if c.IsFrom {
		return a.rel("insert", c.Relation)
	}
	if err := a.rel("select", c.Relation); err != nil {
		return err
	}
	// COPY t TO returns every column (or the listed ones) to the client.
	sc := &scope{}
	if err := a.addRangeVar(sc, c.Relation, ""); err != nil {
		return err
	}
	cols := sc.rels[0].cols
	if len(c.Attlist) == 0 {
		a.st.Outputs = cols
		return nil
	}
	// The listed columns, in the list's order: the fields come that way.
	for _, n := range c.Attlist {
		name := n.GetString_().GetSval()
		i := slices.IndexFunc(cols, func(o Output) bool { return o.Name == name })
		if i < 0 {
			return &unknownColumnError{name}
		}
		a.st.Outputs = append(a.st.Outputs, cols[i])
	}
	return nil
}

// dangerousFunctions map functions with effects beyond reading data to the
// administrative action they amount to.
var dangerousFunctions = map[string]string{
	"pg_read_file": "read_server_file", "pg_read_binary_file": "read_server_file",
	"pg_ls_dir": "read_server_file", "pg_stat_file": "read_server_file", "pg_ls_logdir": "read_server_file",
	"pg_ls_waldir": "read_server_file", "lo_import": "read_server_file", "lo_export": "write_server_file",
	"pg_file_write": "write_server_file", "set_config": "set_role",
	"dblink": "execute_dynamic", "dblink_exec": "execute_dynamic", "dblink_connect": "execute_dynamic",
	"query_to_xml": "execute_dynamic", "query_to_xml_and_xmlschema": "execute_dynamic",
	"pg_terminate_backend": "alter_system", "pg_cancel_backend": "alter_system",
	"pg_reload_conf": "alter_system", "pg_rotate_logfile": "alter_system", "pg_promote": "alter_system",
	"pg_switch_wal": "alter_system", "pg_create_restore_point": "alter_system",
}

func funcName(fc *pg.FuncCall) string {
	if fc == nil || len(fc.Funcname) == 0 {
		return ""
	}
	return strings.ToLower(fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval())
}

// walk visits every node below n: data-modifying statements nested anywhere,
// functions, and every relation the scoped analysis did not account for
// (counted as a read, so nothing escapes a decision).
func (a *pgAnalyzer) walk(n *pg.Node) error {
	var err error
	visit(n.ProtoReflect(), func(m proto.Message) {
		if err != nil {
			return
		}
		switch v := m.(type) {
		case *pg.FuncCall:
			name := funcName(v)
			if name == "set_config" {
				a.setConfig(v)
			}
			if action, ok := dangerousFunctions[name]; ok {
				a.add(action, Object{Kind: ObjectFunction, Name: name})
			} else if !safeFunction(v, a.cat) || (len(v.Funcname) == 1 && a.userFunction(name)) {
				// A user function of a builtin's name may be the one an
				// unqualified call resolves to (overloads, search_path).
				a.add("call", Object{Kind: ObjectFunction, Name: name})
			}
		case *pg.RangeVar:
			if !a.assigned[v] {
				err = a.rel("select", v)
			}
		}
	})
	return err
}

// visit calls fn for every message in the tree below m, m included.
func visit(m protoreflect.Message, fn func(proto.Message)) {
	if !m.IsValid() {
		return
	}
	fn(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message(), fn)
			}
		} else if !fd.IsMap() {
			visit(v.Message(), fn)
		}
		return true
	})
}

// cursorOptHold is CURSOR_OPT_HOLD (DECLARE … WITH HOLD).
const cursorOptHold = 0x0020

// locking records the row locks a SELECT's FOR UPDATE / FOR NO KEY UPDATE /
// FOR SHARE / FOR KEY SHARE clauses take: both databases require a write
// privilege for them, so they are the lock action (in the write group).
func (a *pgAnalyzer) locking(clauses []*pg.Node, sc *scope) error {
	for _, n := range clauses {
		lc := n.GetLockingClause()
		if lc == nil {
			continue
		}
		if len(lc.LockedRels) == 0 {
			a.lockAll = true
			continue
		}
		for _, r := range lc.LockedRels {
			rv := r.GetRangeVar()
			if rv == nil {
				a.lockAll = true
				continue
			}
			a.assigned[rv] = true // an alias of this query level, not a read
			rel, ok := findRel(sc, rv.Relname)
			if !ok || rel.obj == nil {
				a.lockAll = true // a subquery or CTE: everything it reads
				continue
			}
			a.add("lock", *rel.obj)
		}
	}
	return nil
}

// lockReads adds a lock on every table the statement reads.
func (c *collector) lockReads() {
	for _, r := range slices.Clone(c.st.Requests) {
		if r.Action == "select" && r.Object.Kind == ObjectTable {
			c.add("lock", r.Object)
		}
	}
}

// userFunction reports whether the catalog holds a function of that name
// outside the system schemas.
func (a *pgAnalyzer) userFunction(name string) bool {
	u, ok := a.cat.(interface{ UserFunction(string) bool })
	return ok && u.UserFunction(name)
}
