package policy

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// AnalyzePostgres parses sql with PostgreSQL's own grammar (libpg_query) and
// reports every (action, object) pair of every statement in it.
func AnalyzePostgres(sql string) Analysis {
	tree, err := pg.Parse(sql)
	if err != nil {
		return Analysis{Err: fmt.Errorf("cannot parse statement: %w", err)}
	}
	var a Analysis
	for _, raw := range tree.Stmts {
		st, err := analyzePGStatement(raw.Stmt)
		if err != nil {
			return Analysis{Err: err}
		}
		a.Statements = append(a.Statements, st)
	}
	return a
}

// pgAnalyzer collects the requests of one statement.
type pgAnalyzer struct {
	st       Statement
	assigned map[*pg.RangeVar]bool // relations whose action is already decided
	ctes     map[string]bool       // CTE names, which are not tables
}

func analyzePGStatement(n *pg.Node) (Statement, error) {
	a := &pgAnalyzer{assigned: map[*pg.RangeVar]bool{}, ctes: map[string]bool{}}
	if err := a.top(n); err != nil {
		return Statement{}, err
	}
	a.walk(n)
	return a.st, nil
}

func (a *pgAnalyzer) add(action string, o Object) {
	for _, r := range a.st.Requests {
		if r.Action == action && r.Object == o {
			return
		}
	}
	a.st.Requests = append(a.st.Requests, Request{Action: action, Object: o})
}

func (a *pgAnalyzer) rel(action string, rv *pg.RangeVar) {
	if rv == nil {
		return
	}
	a.assigned[rv] = true
	a.add(action, tableOf(rv))
}

var target = Object{Kind: ObjectTarget}

// tableOf resolves a relation name. Unqualified names resolve to "public":
// sluice refuses search_path changes, so this matches the database's default.
func tableOf(rv *pg.RangeVar) Object {
	schema := rv.Schemaname
	if schema == "" {
		schema = "public"
	}
	return Object{Kind: ObjectTable, Schema: schema, Name: rv.Relname}
}

// top classifies the statement by its top-level node.
func (a *pgAnalyzer) top(n *pg.Node) error {
	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt:
		a.st.Kind = "select"
		if s.SelectStmt.IntoClause != nil {
			a.st.Kind = "select_into"
			a.rel("create", s.SelectStmt.IntoClause.Rel)
		}
	case *pg.Node_InsertStmt:
		a.st.Kind = "insert"
	case *pg.Node_UpdateStmt:
		a.st.Kind = "update"
	case *pg.Node_DeleteStmt:
		a.st.Kind = "delete"
	case *pg.Node_MergeStmt:
		a.st.Kind = "merge"
	case *pg.Node_TruncateStmt:
		a.st.Kind = "truncate"
		for _, r := range s.TruncateStmt.Relations {
			a.rel("truncate", r.GetRangeVar())
		}
	case *pg.Node_CreateStmt:
		a.st.Kind = "create"
		a.rel("create", s.CreateStmt.Relation)
	case *pg.Node_CreateTableAsStmt:
		a.st.Kind = "create"
		a.rel("create", s.CreateTableAsStmt.Into.GetRel())
	case *pg.Node_ViewStmt:
		a.st.Kind = "create"
		a.rel("create", s.ViewStmt.View)
	case *pg.Node_IndexStmt:
		a.st.Kind = "create"
		a.rel("create", s.IndexStmt.Relation)
	case *pg.Node_CreateSchemaStmt:
		a.st.Kind = "create"
		a.add("create", Object{Kind: ObjectSchema, Name: s.CreateSchemaStmt.Schemaname})
	case *pg.Node_AlterTableStmt:
		a.st.Kind = "alter"
		a.rel("alter", s.AlterTableStmt.Relation)
	case *pg.Node_RenameStmt:
		a.st.Kind = "alter"
		if s.RenameStmt.Relation != nil {
			a.rel("alter", s.RenameStmt.Relation)
		} else {
			a.add("alter", target)
		}
	case *pg.Node_DropStmt:
		a.st.Kind = "drop"
		a.drop(s.DropStmt)
	case *pg.Node_GrantStmt, *pg.Node_GrantRoleStmt, *pg.Node_AlterDefaultPrivilegesStmt,
		*pg.Node_CreateRoleStmt, *pg.Node_AlterRoleStmt, *pg.Node_AlterRoleSetStmt, *pg.Node_DropRoleStmt,
		*pg.Node_ReassignOwnedStmt, *pg.Node_DropOwnedStmt:
		a.st.Kind = "grant"
		a.add("grant", target)
		// The objects granted on are not read.
		visit(n.ProtoReflect(), func(m proto.Message) {
			if rv, ok := m.(*pg.RangeVar); ok {
				a.assigned[rv] = true
			}
		})
	case *pg.Node_VariableSetStmt:
		a.st.Kind = "set"
		a.add(setAction(s.VariableSetStmt.Name), target)
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
		a.copy(s.CopyStmt)
	case *pg.Node_ExplainStmt:
		// EXPLAIN ANALYZE runs the statement; plain EXPLAIN does not, but it
		// still reveals the plan: both need what the statement needs.
		a.st.Kind = "explain"
		inner, err := analyzePGStatement(s.ExplainStmt.Query)
		if err != nil {
			return err
		}
		for _, r := range inner.Requests {
			a.add(r.Action, r.Object)
		}
	case *pg.Node_DoStmt:
		a.st.Kind = "do"
		a.add("execute_dynamic", target)
	case *pg.Node_ExecuteStmt:
		a.st.Kind = "execute"
		a.add("execute_dynamic", target)
	case *pg.Node_PrepareStmt:
		a.st.Kind = "prepare"
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
		var name string
		if fc := s.CallStmt.Funccall; fc != nil && len(fc.Funcname) > 0 {
			name = strings.ToLower(fc.Funcname[len(fc.Funcname)-1].GetString_().GetSval())
		}
		a.add("call", Object{Kind: ObjectFunction, Name: name})
	case *pg.Node_LockStmt:
		a.st.Kind = "lock"
		for _, r := range s.LockStmt.Relations {
			a.rel("update", r.GetRangeVar())
		}
	case *pg.Node_VacuumStmt:
		a.st.Kind = "maintenance"
		a.add("alter", target)
	default:
		if n.Node == nil {
			return fmt.Errorf("empty statement node")
		}
		name := strings.TrimPrefix(fmt.Sprintf("%T", n.Node), "*pg_query.Node_")
		if strings.HasPrefix(name, "Create") || strings.HasPrefix(name, "Define") {
			a.st.Kind = "create"
			a.add("create", target)
			return nil
		}
		if strings.HasPrefix(name, "Alter") {
			a.st.Kind = "alter"
			a.add("alter", target)
			return nil
		}
		return fmt.Errorf("sluice does not understand statements of type %s", name)
	}
	return nil
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
				a.add("drop", Object{Kind: ObjectTable, Schema: "public", Name: parts[0]})
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

func (a *pgAnalyzer) copy(c *pg.CopyStmt) {
	switch {
	case c.IsProgram:
		a.add("copy_program", target)
	case c.Filename != "" && c.IsFrom:
		a.add("read_server_file", target)
	case c.Filename != "":
		a.add("write_server_file", target)
	}
	if c.Relation != nil {
		if c.IsFrom {
			a.rel("insert", c.Relation)
		} else {
			a.rel("select", c.Relation)
		}
	}
}

// dangerousFunctions map functions with effects beyond reading data to the
// administrative action they amount to.
var dangerousFunctions = map[string]string{
	"pg_read_file": "read_server_file", "pg_read_binary_file": "read_server_file",
	"pg_ls_dir": "read_server_file", "pg_stat_file": "read_server_file",
	"lo_import": "read_server_file", "lo_export": "write_server_file",
	"set_config": "set_role", "dblink": "execute_dynamic", "dblink_exec": "execute_dynamic",
	"pg_terminate_backend": "alter_system", "pg_cancel_backend": "alter_system",
	"pg_reload_conf": "alter_system", "pg_rotate_logfile": "alter_system",
}

// walk visits every node below n: data-modifying statements nested in CTEs,
// every other relation as a read, and functions with side effects.
func (a *pgAnalyzer) walk(n *pg.Node) {
	var nested []func()
	visit(n.ProtoReflect(), func(m proto.Message) {
		switch v := m.(type) {
		case *pg.CommonTableExpr:
			a.ctes[v.Ctename] = true
		case *pg.InsertStmt:
			nested = append(nested, func() { a.rel("insert", v.Relation) })
		case *pg.UpdateStmt:
			nested = append(nested, func() { a.rel("update", v.Relation) })
		case *pg.DeleteStmt:
			nested = append(nested, func() { a.rel("delete", v.Relation) })
		case *pg.MergeStmt:
			nested = append(nested, func() {
				a.rel("update", v.Relation)
				a.add("insert", tableOf(v.Relation))
				a.add("delete", tableOf(v.Relation))
			})
		case *pg.FuncCall:
			var name string
			if k := len(v.Funcname); k > 0 {
				name = strings.ToLower(v.Funcname[k-1].GetString_().GetSval())
			}
			if action, ok := dangerousFunctions[name]; ok {
				a.add(action, Object{Kind: ObjectFunction, Name: name})
			}
		}
	})
	for _, f := range nested {
		f()
	}
	visit(n.ProtoReflect(), func(m proto.Message) {
		rv, ok := m.(*pg.RangeVar)
		if !ok || a.assigned[rv] {
			return
		}
		if rv.Schemaname == "" && a.ctes[rv.Relname] {
			return
		}
		a.add("select", tableOf(rv))
	})
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
