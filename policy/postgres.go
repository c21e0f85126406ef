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
	}
	return a
}

// pgAnalyzer collects the requests of one statement.
type pgAnalyzer struct {
	cat Catalog
	collector
	assigned map[*pg.RangeVar]bool // relations already accounted for
	work     *int                  // query blocks analyzed, shared with nested analyses
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
	return a.st, nil
}

// table resolves a relation reference against the catalog.
func (a *pgAnalyzer) table(rv *pg.RangeVar) (Object, error) {
	schema, err := resolveRelation(a.cat, rv.Schemaname, rv.Relname)
	if err != nil {
		return Object{}, err
	}
	return Object{Kind: ObjectTable, Schema: schema, Name: rv.Relname}, nil
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
func (a *pgAnalyzer) newRel(action string, rv *pg.RangeVar) {
	if rv == nil {
		return
	}
	a.assigned[rv] = true
	schema := rv.Schemaname
	if schema == "" {
		schema = "public"
		if rv.Relpersistence == "t" {
			schema = "pg_temp"
		}
	}
	a.add(action, Object{Kind: ObjectTable, Schema: schema, Name: rv.Relname})
}

var target = Object{Kind: ObjectTarget}

// top classifies the statement by its top-level node.
func (a *pgAnalyzer) top(n *pg.Node) error {
	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt:
		a.st.Kind = "select"
		if into := s.SelectStmt.IntoClause; into != nil {
			a.st.Kind = "select_into"
			a.newRel("create", into.Rel)
		}
		outs, err := a.selectStmt(s.SelectStmt, nil)
		if err != nil {
			return err
		}
		if s.SelectStmt.IntoClause != nil {
			a.use(sourcesOf(outs)...) // the values flow into the new table
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
		a.newRel("create", s.CreateStmt.Relation)
	case *pg.Node_CreateTableAsStmt:
		a.st.Kind = "create"
		a.newRel("create", s.CreateTableAsStmt.Into.GetRel())
	case *pg.Node_ViewStmt:
		a.st.Kind = "create"
		a.newRel("create", s.ViewStmt.View)
	case *pg.Node_IndexStmt:
		a.st.Kind = "create"
		return a.rel("create", s.IndexStmt.Relation)
	case *pg.Node_CreateSchemaStmt:
		a.st.Kind = "create"
		a.add("create", Object{Kind: ObjectSchema, Name: s.CreateSchemaStmt.Schemaname})
	case *pg.Node_AlterTableStmt:
		a.st.Kind = "alter"
		return a.rel("alter", s.AlterTableStmt.Relation)
	case *pg.Node_RenameStmt:
		a.st.Kind = "alter"
		if s.RenameStmt.Relation != nil {
			return a.rel("alter", s.RenameStmt.Relation)
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
		a.st.Kind = "prepare"
		inner, err := analyzePGStatementWork(s.PrepareStmt.Query, a.cat, a.work)
		if err != nil {
			return err
		}
		for _, r := range inner.Requests {
			a.add(r.Action, r.Object)
		}
		a.assignAll(n)
	case *pg.Node_ListenStmt, *pg.Node_UnlistenStmt:
		a.st.Kind = "listen"
		a.add("set", target)
	case *pg.Node_NotifyStmt:
		// NOTIFY is pg_notify(): it reaches other sessions.
		a.st.Kind = "notify"
		a.add("call", Object{Kind: ObjectFunction, Name: "pg_notify"})
	case *pg.Node_DeallocateStmt, *pg.Node_DiscardStmt:
		a.st.Kind = "set"
		a.add("set", target)
	case *pg.Node_CallStmt:
		a.st.Kind = "call"
		a.add("call", Object{Kind: ObjectFunction, Name: funcName(s.CallStmt.Funccall)})
	case *pg.Node_LockStmt:
		a.st.Kind = "lock"
		for _, r := range s.LockStmt.Relations {
			if err := a.rel("update", r.GetRangeVar()); err != nil {
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
		switch {
		case strings.HasPrefix(name, "Create") || strings.HasPrefix(name, "Define"):
			a.st.Kind = "create"
			a.add("create", target)
		case strings.HasPrefix(name, "Alter"):
			a.st.Kind = "alter"
			a.add("alter", target)
		default:
			return fmt.Errorf("sluice does not understand statements of type %s", name)
		}
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
	case pg.VariableSetKind_VAR_SET_DEFAULT, pg.VariableSetKind_VAR_RESET, pg.VariableSetKind_VAR_RESET_ALL:
		st.Default = true
	case pg.VariableSetKind_VAR_SET_VALUE:
		if len(v.Args) == 1 {
			if c := v.Args[0].GetAConst(); c != nil {
				switch {
				case c.GetIval() != nil:
					st.Value = strconv.FormatInt(int64(c.GetIval().Ival), 10)
				case c.GetFval() != nil:
					st.Value = c.GetFval().Fval
				case c.GetSval() != nil:
					st.Value = c.GetSval().Sval
				}
			}
		}
	}
	a.st.Settings = append(a.st.Settings, st)
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
			case 2:
				a.add("drop", Object{Kind: ObjectTable, Schema: parts[0], Name: parts[1]})
			default:
				a.add("drop", target)
			}
		}
	case pg.ObjectType_OBJECT_SCHEMA:
		for _, o := range d.Objects {
			a.add("drop", Object{Kind: ObjectSchema, Name: o.GetString_().GetSval()})
		}
	default:
		a.add("drop", target)
	}
}

func (a *pgAnalyzer) copy(c *pg.CopyStmt) error {
	a.st.CopyFormat = "text"
	for _, o := range c.Options {
		if de := o.GetDefElem(); de != nil && strings.EqualFold(de.Defname, "format") {
			a.st.CopyFormat = strings.ToLower(de.Arg.GetString_().GetSval())
			if a.st.CopyFormat == "" {
				a.st.CopyFormat = "unknown"
			}
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
	for _, col := range sc.rels[0].cols {
		if len(c.Attlist) == 0 || slices.ContainsFunc(c.Attlist, func(n *pg.Node) bool { return n.GetString_().GetSval() == col.Name }) {
			a.st.Outputs = append(a.st.Outputs, col)
		}
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
			if action, ok := dangerousFunctions[name]; ok {
				a.add(action, Object{Kind: ObjectFunction, Name: name})
			} else if !safeFunction(v) {
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
