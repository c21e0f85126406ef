package policy

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/test_driver" // literal values in the AST
)

// MySQLSession is what of a MySQL session decides how its SQL reads.
type MySQLSession struct {
	Database string  // the default database
	Mode     SQLMode // sql_mode, which changes lexing
	// Version is the server's version number (MariaDB 10.11.19: 101119),
	// which decides the /*!NNNNN … */ comments that run; 0 when unknown
	// (offline analysis), when every executable comment is taken to run.
	Version int
	MariaDB bool
}

// AnalyzeMySQL parses sql with the TiDB parser (MySQL's grammar) under the
// session's sql_mode, after opening executable comments exactly as the
// server would, and reports the same account as AnalyzePostgres. cat,
// when given, holds "database.table" → columns.
func AnalyzeMySQL(sql string, env MySQLSession, cat Catalog) (a Analysis) {
	// The TiDB parser panics on some literals (e.g. very long decimals); a
	// statement sluice cannot parse is refused, never a crash.
	defer func() {
		if r := recover(); r != nil {
			a = Analysis{Err: fmt.Errorf("cannot parse statement: parser failed: %v", r)}
		}
	}()
	text, err := openComments(sql, env)
	if err != nil {
		return Analysis{Err: fmt.Errorf("cannot parse statement: %w", err)}
	}
	p := parser.New()
	p.SetSQLMode(env.Mode.mode)
	stmts, _, err := p.ParseSQL(text)
	if err != nil {
		return Analysis{Err: fmt.Errorf("cannot parse statement: %w", err)}
	}
	db := env.Database
	for i, s := range stmts {
		st, err := analyzeMyStatement(s, MySQLSession{Database: db, Mode: env.Mode, Version: env.Version, MariaDB: env.MariaDB}, cat)
		if err != nil {
			return Analysis{Err: err}
		}
		if len(stmts) > 1 {
			cat = followInString(cat, st.Effects)
		}
		for _, e := range st.Effects {
			switch e.Kind {
			case EffectUse:
				db = e.Name // the server reads the rest in that database
			case EffectSQLMode, EffectCharset:
				if i < len(stmts)-1 {
					// The server lexes the rest of the string under the new
					// setting; only the last statement may change it.
					return Analysis{Err: fmt.Errorf("a statement that changes sql_mode or the client character set must be the last of its string (%s)", PinnedPolicy)}
				}
			}
		}
		a.Statements = append(a.Statements, st)
	}
	return a
}

type myAnalyzer struct {
	db  string
	env MySQLSession
	cat Catalog
	collector
	assigned map[*ast.TableName]bool
	work     *int
	views    map[Object]bool // views being traced (a definition's analysis)
	lockAll  bool            // FOR UPDATE / LOCK IN SHARE MODE without OF
}

func analyzeMyStatement(n ast.StmtNode, env MySQLSession, cat Catalog) (Statement, error) {
	return analyzeMyStatementWork(n, env, cat, new(int))
}

func analyzeMyStatementWork(n ast.StmtNode, env MySQLSession, cat Catalog, work *int) (Statement, error) {
	a := &myAnalyzer{db: env.Database, env: env, cat: cat, assigned: map[*ast.TableName]bool{}, work: work}
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

// table resolves a table name: unqualified names belong to the session's
// default database, as in MySQL.
func (a *myAnalyzer) table(tn *ast.TableName) (Object, error) {
	db := tn.Schema.O
	if db == "" {
		db = a.db
	}
	if db == "" {
		return Object{}, fmt.Errorf("no database selected for table %s", tn.Name.O)
	}
	name := tn.Name.O
	if a.cat != nil {
		if _, ok := a.cat.Columns(db, name); !ok {
			// information_schema's names are case-insensitive whatever
			// lower_case_table_names says; the catalog holds them as the
			// server lists them (upper case in MariaDB).
			up := strings.ToUpper(name)
			if !strings.EqualFold(db, "information_schema") {
				return Object{}, &UnknownRelationError{Schema: db, Name: name}
			}
			if _, ok := a.cat.Columns("information_schema", up); !ok {
				return Object{}, &UnknownRelationError{Schema: db, Name: name}
			}
			db, name = "information_schema", up
		}
	}
	obj := Object{Kind: ObjectTable, Schema: db, Name: name}
	return obj, uncertainRelation(a.cat, obj)
}

func (a *myAnalyzer) rel(action string, tn *ast.TableName) error {
	if tn == nil {
		return nil
	}
	a.assigned[tn] = true
	o, err := a.table(tn)
	if err != nil {
		return err
	}
	a.add(action, o)
	return nil
}

// newRel is a table a statement creates: it need not exist yet.
func (a *myAnalyzer) newRel(action string, tn *ast.TableName) Object {
	a.assigned[tn] = true
	db := tn.Schema.O
	if db == "" {
		db = a.db
	}
	obj := Object{Kind: ObjectTable, Schema: db, Name: tn.Name.O}
	a.add(action, obj)
	return obj
}

func kindOf(n ast.Node) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", n), "*ast."), "Stmt"))
}

func (a *myAnalyzer) top(n ast.StmtNode) error {
	a.st.Kind = kindOf(n)
	switch s := n.(type) {
	case *ast.SelectStmt:
		a.st.Kind = "select"
		outs, err := a.selectStmt(s, nil)
		if err != nil {
			return err
		}
		if into := s.SelectIntoOpt; into != nil {
			if into.Tp == ast.SelectIntoVars {
				a.use(sourcesOf(outs)...)
				return nil
			}
			a.st.Kind = "select_into_outfile"
			a.add("write_server_file", target)
			a.use(sourcesOf(outs)...)
			return nil
		}
		a.st.Outputs = outs
	case *ast.SetOprStmt:
		a.st.Kind = "select"
		outs, err := a.setOpr(s, nil)
		a.st.Outputs = outs
		return err
	case *ast.InsertStmt:
		a.st.Kind = "insert"
		if s.IsReplace {
			a.st.Kind = "replace"
		}
		return a.insert(s)
	case *ast.UpdateStmt:
		a.st.Kind = "update"
		return a.update(s)
	case *ast.DeleteStmt:
		a.st.Kind = "delete"
		return a.delete(s)
	case *ast.TruncateTableStmt:
		return a.rel("truncate", s.Table)
	case *ast.CreateTableStmt:
		a.st.Kind = "create"
		if s.TemporaryKeyword != ast.TemporaryNone && a.cat != nil {
			if obj, err := a.table(s.Table); err == nil {
				// A temporary table stands in for the table of its name.
				return fmt.Errorf("a temporary table named %q would shadow the existing %s.%s: choose another name", s.Table.Name.O, obj.Schema, obj.Name)
			}
		}
		obj := a.newRel("create", s.Table)
		temporary := s.TemporaryKeyword != ast.TemporaryNone
		if s.ReferTable != nil {
			// LIKE: columns sluice would have to look up.
			a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: obj.Schema, Name: obj.Name})
			return a.rel("select", s.ReferTable)
		}
		var names []string
		for _, c := range s.Cols {
			names = append(names, c.Name.Name.O)
		}
		var lineage []Output
		if s.Select != nil {
			// CREATE TABLE … SELECT: the values flow into the table (an
			// inference channel unless use_masked); its columns keep their
			// lineage while sluice knows it (the session's relations).
			outs, err := a.resultSet(s.Select, &scope{})
			if err != nil {
				return err
			}
			a.use(sourcesOf(outs)...)
			if len(names) > 0 {
				// Declared columns and selected ones side by side.
				a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: obj.Schema, Name: obj.Name})
				return nil
			}
			for _, o := range outs {
				names = append(names, o.Name)
			}
			lineage = outs
		}
		a.created(obj, names, lineage, s.IfNotExists, false, temporary)
	case *ast.CreateViewStmt:
		a.st.Kind = "create"
		a.newRel("create", s.ViewName)
	case *ast.CreateIndexStmt:
		a.st.Kind = "create"
		return a.rel("create", s.Table)
	case *ast.AlterTableStmt:
		a.st.Kind = "alter"
		if err := a.rel("alter", s.Table); err != nil {
			return err
		}
		for _, spec := range s.Specs {
			if spec.Tp == ast.AlterTableRenameTable && spec.NewTable != nil {
				a.newRel("create", spec.NewTable) // as RENAME TABLE: a name that need not exist
			}
		}
		if o, err := a.table(s.Table); err == nil {
			a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: o.Schema, Name: o.Name})
			for _, spec := range s.Specs {
				if spec.Tp == ast.AlterTableRenameTable && spec.NewTable != nil {
					a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: cmp.Or(spec.NewTable.Schema.O, a.db), Name: spec.NewTable.Name.O, Hold: isSessionRelation(a.cat, o)})
				}
			}
		}
	case *ast.DropIndexStmt:
		a.st.Kind = "alter"
		return a.rel("alter", s.Table)
	case *ast.RenameTableStmt:
		a.st.Kind = "alter"
		for _, t := range s.TableToTables {
			if err := a.rel("alter", t.OldTable); err != nil {
				return err
			}
			n := a.newRel("create", t.NewTable)
			if o, err := a.table(t.OldTable); err == nil && isSessionRelation(a.cat, o) {
				// A temporary table under a new name: sluice no longer
				// knows what it holds (it could stand in for a table).
				a.st.Effects = append(a.st.Effects, Effect{Kind: EffectUncertainRel, Value: o.Schema, Name: o.Name},
					Effect{Kind: EffectUncertainRel, Value: n.Schema, Name: n.Name, Hold: true})
			}
		}
	case *ast.DropTableStmt:
		a.st.Kind = "drop"
		for _, t := range s.Tables {
			o := a.newRel("drop", t) // DROP … IF EXISTS may name a missing table
			a.st.Effects = append(a.st.Effects, Effect{Kind: EffectDropRel, Value: o.Schema, Name: o.Name})
		}
	case *ast.CreateDatabaseStmt:
		a.st.Kind = "create"
		a.add("create", Object{Kind: ObjectSchema, Name: s.Name.O})
	case *ast.DropDatabaseStmt:
		a.st.Kind = "drop"
		a.add("drop", Object{Kind: ObjectSchema, Name: s.Name.O})
	case *ast.UseStmt:
		a.st.Kind = "use"
		a.add("use", Object{Kind: ObjectSchema, Name: s.DBName})
		a.st.Effects = []Effect{{Kind: EffectUse, Name: s.DBName}}
	case *ast.SetStmt:
		a.st.Kind = "set"
		for _, v := range s.Variables {
			a.add(mySetAction(v), target)
			if st, ok := mySetting(v); ok {
				a.st.Settings = append(a.st.Settings, st)
				if !v.IsGlobal && !v.IsInstance && !st.Default && !st.Computed {
					switch st.Name {
					case "sql_mode":
						if m, err := ParseSQLMode(st.Value); err == nil {
							a.st.Effects = append(a.st.Effects, Effect{Kind: EffectSQLMode, Value: m.Text})
						}
					case "character_set_client", "names", "character set":
						a.st.Effects = append(a.st.Effects, Effect{Kind: EffectCharset, Value: strings.ToLower(st.Value)})
					}
				}
			}
			if v.Value != nil {
				// A value stored in a variable can be read back unmasked.
				src, err := a.expr(v.Value, &scope{})
				if err != nil {
					return err
				}
				a.use(src...)
			}
		}
	case *ast.SetRoleStmt, *ast.SetDefaultRoleStmt:
		a.st.Kind = "set_role"
		a.add("set_role", target)
	case *ast.GrantStmt, *ast.RevokeStmt, *ast.GrantRoleStmt, *ast.RevokeRoleStmt, *ast.CreateUserStmt,
		*ast.AlterUserStmt, *ast.DropUserStmt, *ast.SetPwdStmt, *ast.RenameUserStmt, *ast.GrantProxyStmt:
		a.st.Kind = "grant"
		a.add("grant", target)
		a.assignAll(n)
	case *ast.LoadDataStmt:
		a.st.Kind = "load_data"
		a.add("read_server_file", target) // LOCAL or not: files never enter through the gateway
		return a.rel("insert", s.Table)
	case *ast.PrepareStmt:
		a.st.Kind = "prepare"
		if s.SQLVar != nil || s.SQLText == "" {
			a.add("execute_dynamic", target) // text unknown until run
			return nil
		}
		inner := AnalyzeMySQL(s.SQLText, MySQLSession{Database: a.db, Mode: a.env.Mode, Version: a.env.Version, MariaDB: a.env.MariaDB}, a.cat)
		if inner.Err != nil {
			return inner.Err
		}
		for _, st := range inner.Statements {
			for _, r := range st.Requests {
				a.add(r.Action, r.Object)
			}
		}
	case *ast.ExecuteStmt:
		a.st.Kind = "execute"
		a.add("execute_dynamic", target)
	case *ast.DeallocateStmt:
		a.add("set", target)
	case *ast.CallStmt:
		a.add("call", Object{Kind: ObjectFunction, Name: strings.ToLower(s.Procedure.FnName.O)})
		a.assignAll(n)
	case *ast.DoStmt:
		// DO evaluates expressions: their functions are checked by walk.
		for _, e := range s.Exprs {
			src, err := a.expr(e, &scope{})
			if err != nil {
				return err
			}
			a.use(src...)
		}
	case *ast.ShowStmt:
		a.st.Kind = "show"
		switch s.Tp {
		case ast.ShowWarnings, ast.ShowErrors:
			// The last statement's diagnostics: the session refuses them
			// after a statement that read masked values.
			a.st.Kind = "show_warnings"
			a.add("show", target)
		case ast.ShowProcessList, ast.ShowCreateUser, ast.ShowMasterStatus, ast.ShowBinlogStatus, ast.ShowReplicaStatus:
			// Other sessions' statements, password hashes, replication
			// state: server-wide, beyond any agent's task.
			a.add("monitor", target)
		default:
			a.add("show", target)
		}
		a.assignAll(n)
	case *ast.ExplainStmt:
		a.st.Kind = "explain"
		inner, err := analyzeMyStatementWork(s.Stmt, MySQLSession{Database: a.db, Mode: a.env.Mode, Version: a.env.Version, MariaDB: a.env.MariaDB}, a.cat, a.work)
		if err != nil {
			return err
		}
		for _, r := range inner.Requests {
			a.add(r.Action, r.Object)
		}
		a.use(inner.Uses...)
		a.use(sourcesOf(inner.Outputs)...)
		a.assignAll(n)
	case *ast.BeginStmt, *ast.CommitStmt, *ast.RollbackStmt, *ast.SavepointStmt, *ast.ReleaseSavepointStmt:
		a.st.Kind = "transaction"
		a.add("transaction", target)
	case *ast.FlushStmt, *ast.KillStmt, *ast.ShutdownStmt, *ast.RestartStmt:
		a.st.Kind = "alter_system"
		a.add("alter_system", target)
	case *ast.LockTablesStmt:
		a.st.Kind = "lock"
		for _, t := range s.TableLocks {
			if err := a.rel("lock", t.Table); err != nil {
				return err
			}
		}
	case *ast.UnlockTablesStmt:
		a.add("transaction", target)
	case *ast.AnalyzeTableStmt, *ast.OptimizeTableStmt, *ast.RepairTableStmt:
		// Statistics and storage upkeep of the named tables.
		a.st.Kind = "maintenance"
		a.add("alter", target)
		a.assignAll(n)
	case *ast.CreateSequenceStmt:
		// A MariaDB sequence is a table of one row.
		a.st.Kind = "create"
		a.newRel("create", s.Name)
	case *ast.AlterSequenceStmt:
		a.st.Kind = "alter"
		a.newRel("alter", s.Name)
	case *ast.DropSequenceStmt:
		a.st.Kind = "drop"
		for _, t := range s.Sequences {
			a.newRel("drop", t)
		}
	case *ast.AlterDatabaseStmt:
		a.st.Kind = "alter"
		a.add("alter", target)
	case *ast.ProcedureInfo:
		a.st.Kind = "create"
		a.add("create", target)
		a.assignAll(n)
	case *ast.DropProcedureStmt:
		a.st.Kind = "drop"
		a.add("drop", target)
	case *ast.BinlogStmt, *ast.AlterInstanceStmt:
		// BINLOG replays raw row events; ALTER INSTANCE is server-wide.
		a.st.Kind = "alter_system"
		a.add("alter_system", target)
	case *ast.ExplainForStmt:
		// EXPLAIN FOR CONNECTION: another session's statement.
		a.st.Kind = "explain"
		a.add("monitor", target)
	case *ast.HelpStmt:
		a.st.Kind = "show"
		a.add("show", target)
	default:
		return fmt.Errorf("sluice does not understand statements of type %s", strings.TrimPrefix(fmt.Sprintf("%T", n), "*ast."))
	}
	return nil
}

// mySetAction maps a SET assignment to its action.
func mySetAction(v *ast.VariableAssignment) string {
	name := strings.ToLower(v.Name)
	switch {
	case v.IsGlobal || v.IsInstance:
		return "alter_system"
	case name == "sql_log_bin" || name == "sql_safe_updates" || name == "foreign_key_checks" || name == "unique_checks":
		// Session switches that disable the server's own safety nets.
		return "alter_system"
	}
	return "set"
}

func (a *myAnalyzer) assignAll(n ast.Node) {
	n.Accept(&visitor{enter: func(n ast.Node) bool {
		if tn, ok := n.(*ast.TableName); ok {
			a.assigned[tn] = true
		}
		return true
	}})
}

// dangerousMyFunctions map functions with effects beyond reading data to
// administrative actions.
var dangerousMyFunctions = map[string]string{
	"load_file": "read_server_file", "sys_exec": "execute_dynamic", "sys_eval": "execute_dynamic",
}

// callMyFunctions are documented builtins with effects beyond the
// statement (locks other sessions see, sequence state, burning the
// server's CPU): a call request, refused unless permitted.
var callMyFunctions = set(`
get_lock release_lock release_all_locks is_free_lock is_used_lock benchmark nextval setval lastval
`)

// safeMyFunctions only compute (MySQL's and MariaDB's documented builtins;
// TestMySQLBuiltinsClassified checks every one the parser knows is
// classified here, in callMyFunctions, dangerousMyFunctions, or as TiDB's).
var safeMyFunctions = set(`
bit_count coalesce greatest least regexp_like regexp_substr regexp_instr regexp_replace
time_format timestamp translate char weight_string charset coercibility collation current_role
format_bytes is_ipv4_compat is_ipv4_mapped is_uuid uuid_version uuid_timestamp name_const
aes_decrypt aes_encrypt compress uncompress uncompressed_length decode encode password random_bytes
validate_password_strength json_merge json_array_append json_array_insert json_overlaps json_memberof
json_schema_valid json_storage_free json_storage_size grouping
count sum avg min max group_concat bit_and bit_or bit_xor std stddev stddev_pop stddev_samp variance
var_pop var_samp json_arrayagg json_objectagg any_value row_number rank dense_rank ntile lag lead
first_value last_value nth_value cume_dist percent_rank
lower lcase upper ucase length char_length character_length octet_length bit_length substring substr
substring_index mid trim ltrim rtrim concat concat_ws replace left right locate position instr lpad
rpad repeat reverse space strcmp md5 sha sha1 sha2 crc32 hex unhex to_base64 from_base64 format
quote regexp_replace regexp_substr regexp_instr regexp_like ascii ord char elt field find_in_set
insert make_set export_set soundex
abs ceil ceiling floor round truncate mod pow power sqrt exp ln log log2 log10 sign greatest least rand
pi degrees radians sin cos tan asin acos atan atan2 cot conv bin oct crc32
now current_timestamp current_date curdate current_time curtime sysdate utc_date utc_time
utc_timestamp unix_timestamp from_unixtime date_format date_add date_sub adddate subdate addtime
subtime datediff timediff timestampdiff timestampadd date time year month monthname day dayofmonth
dayofweek dayofyear dayname hour minute second microsecond week weekday weekofyear yearweek quarter
last_day makedate maketime str_to_date extract to_days from_days to_seconds sec_to_time time_to_sec
period_add period_diff get_format convert_tz localtime localtimestamp
json_extract json_unquote json_object json_array json_contains json_contains_path json_keys
json_length json_type json_valid json_set json_insert json_replace json_remove json_search
json_quote json_merge_patch json_merge_preserve json_pretty json_depth json_value
if ifnull nullif coalesce isnull cast convert interval database schema user current_user
session_user system_user version connection_id last_insert_id row_count found_rows uuid uuid_short
inet_aton inet_ntoa inet6_aton inet6_ntoa is_ipv4 is_ipv6 bin_to_uuid uuid_to_bin sleep
`)

// walk checks every function call and every table the scoped analysis did
// not account for (taken as a read, so nothing escapes a decision).
func (a *myAnalyzer) walk(n ast.Node) error {
	var err error
	n.Accept(&visitor{enter: func(n ast.Node) bool {
		if err != nil {
			return false
		}
		switch v := n.(type) {
		case *ast.FuncCallExpr:
			name := strings.ToLower(v.FnName.O)
			if action, ok := dangerousMyFunctions[name]; ok {
				a.add(action, Object{Kind: ObjectFunction, Name: name})
			} else if v.Tp == ast.FuncCallExprTypeGeneric || v.Schema.O != "" || !safeMyFunctions[name] || callMyFunctions[name] {
				a.add("call", Object{Kind: ObjectFunction, Name: name})
			}
		case *ast.TableName:
			if !a.assigned[v] {
				err = a.rel("select", v)
			}
		case *ast.VariableExpr:
			if v.IsSystem && v.Value != nil && (v.IsGlobal || v.IsInstance) {
				a.add("alter_system", target)
			}
		}
		return true
	}})
	return err
}

type visitor struct{ enter func(ast.Node) bool }

func (v *visitor) Enter(n ast.Node) (ast.Node, bool) { return n, !v.enter(n) }
func (v *visitor) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// mySetting reads a system-variable assignment (SET NAMES and SET
// CHARACTER SET included) as a Setting.
func mySetting(v *ast.VariableAssignment) (Setting, bool) {
	st := Setting{Name: strings.ToLower(v.Name)}
	switch v.Name {
	case ast.SetNames:
		st.Name = "names"
	case ast.SetCharset:
		st.Name = "character set"
	default:
		if !v.IsSystem {
			return Setting{}, false
		}
	}
	switch x := v.Value.(type) {
	case *ast.DefaultExpr:
		st.Default = true
	case *test_driver.ValueExpr:
		if x.GetValue() == nil {
			st.Computed = true // NULL
		} else {
			st.Value = fmt.Sprint(x.GetValue())
		}
	case *ast.ColumnNameExpr:
		// SET sql_mode = ANSI: a bare word is the value itself.
		if x.Name.Table.O == "" {
			st.Value = x.Name.Name.O
		} else {
			st.Computed = true
		}
	default:
		st.Computed = true
	}
	return st, true
}

// lockInfo records the row locks of SELECT … FOR UPDATE / FOR SHARE /
// LOCK IN SHARE MODE: the lock action, in the write group.
func (a *myAnalyzer) lockInfo(li *ast.SelectLockInfo, sc *scope) {
	if li == nil || li.LockType == ast.SelectLockNone {
		return
	}
	if len(li.Tables) == 0 {
		a.lockAll = true
		return
	}
	for _, tn := range li.Tables {
		r, ok := myFindRel(sc, tn.Name.O)
		if !ok || r.obj == nil {
			a.lockAll = true
			continue
		}
		a.add("lock", *r.obj)
	}
}
