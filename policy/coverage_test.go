package policy

import (
	"fmt"
	goast "go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pingcap/tidb/pkg/parser"
)

// Statement coverage: every statement node of PostgreSQL's grammar
// (pg_query) and every statement type of the TiDB parser, each with an
// example and how sluice reads it. The test fails when the grammar has a
// statement type the table does not classify, when an example does not
// parse to its type, or when the analyzer does not understand one that is
// not a documented refusal. It writes docs/statement-coverage.md; with
// SLUICE_UPDATE_COVERAGE=1 it rewrites it, otherwise it fails if the file
// differs.

// pgNotStatements are nodes the grammar names *Stmt that never stand as
// a statement of their own.
var pgNotStatements = map[string]string{
	"RawStmt":             "the parser's wrapper around every statement",
	"SetOperationStmt":    "UNION / INTERSECT / EXCEPT after analysis; parsed as SelectStmt",
	"ReturnStmt":          "RETURN inside a SQL-standard function body (BEGIN ATOMIC … END), analyzed with its CREATE FUNCTION",
	"PlassignStmt":        "a PL/pgSQL assignment; parsed only inside PL/pgSQL",
	"ReplicaIdentityStmt": "REPLICA IDENTITY is an ALTER TABLE subcommand (AlterTableStmt)",
}

var pgExamples = map[string]string{
	"InsertStmt": "INSERT INTO orders (id, customer_id) VALUES (1, 2)", "DeleteStmt": "DELETE FROM orders WHERE id = 1",
	"UpdateStmt": "UPDATE orders SET total_cents = 0 WHERE id = 1", "SelectStmt": "SELECT name FROM customers",
	"MergeStmt":        "MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED THEN DELETE",
	"CreateSchemaStmt": "CREATE SCHEMA staging", "AlterTableStmt": "ALTER TABLE orders ADD COLUMN note text",
	"AlterCollationStmt": "ALTER COLLATION \"C\" REFRESH VERSION", "AlterDomainStmt": "ALTER DOMAIN posint SET NOT NULL",
	"GrantStmt": "GRANT SELECT ON customers TO PUBLIC", "GrantRoleStmt": "GRANT pg_read_all_data TO agent",
	"AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
	"CopyStmt":                   "COPY customers (name) TO STDOUT", "VariableSetStmt": "SET statement_timeout = '5s'",
	"VariableShowStmt": "SHOW work_mem", "CreateStmt": "CREATE TABLE t2 (a int, b text)",
	"CreateTableSpaceStmt": "CREATE TABLESPACE ts LOCATION '/tmp/ts'", "DropTableSpaceStmt": "DROP TABLESPACE ts",
	"AlterTableSpaceOptionsStmt": "ALTER TABLESPACE ts SET (seq_page_cost = 1)",
	"AlterTableMoveAllStmt":      "ALTER TABLE ALL IN TABLESPACE ts SET TABLESPACE pg_default",
	"CreateExtensionStmt":        "CREATE EXTENSION dblink", "AlterExtensionStmt": "ALTER EXTENSION dblink UPDATE",
	"AlterExtensionContentsStmt": "ALTER EXTENSION dblink ADD FUNCTION f()",
	"CreateFdwStmt":              "CREATE FOREIGN DATA WRAPPER w", "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER w OPTIONS (ADD a '1')",
	"CreateForeignServerStmt": "CREATE SERVER s FOREIGN DATA WRAPPER w", "AlterForeignServerStmt": "ALTER SERVER s OPTIONS (ADD host 'h')",
	"CreateForeignTableStmt": "CREATE FOREIGN TABLE ft (a int) SERVER s",
	"CreateUserMappingStmt":  "CREATE USER MAPPING FOR agent SERVER s OPTIONS (user 'u', password 'p')",
	"AlterUserMappingStmt":   "ALTER USER MAPPING FOR agent SERVER s OPTIONS (SET password 'q')",
	"DropUserMappingStmt":    "DROP USER MAPPING FOR agent SERVER s", "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO staging",
	"CreatePolicyStmt": "CREATE POLICY p ON customers USING (true)", "AlterPolicyStmt": "ALTER POLICY p ON customers USING (false)",
	"CreateAmStmt":        "CREATE ACCESS METHOD myam TYPE TABLE HANDLER heap_tableam_handler",
	"CreateTrigStmt":      "CREATE TRIGGER tr BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()",
	"CreateEventTrigStmt": "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()",
	"AlterEventTrigStmt":  "ALTER EVENT TRIGGER et DISABLE", "CreatePlangStmt": "CREATE LANGUAGE plsample HANDLER plsample_call_handler",
	"CreateRoleStmt": "CREATE ROLE r", "AlterRoleStmt": "ALTER ROLE agent SUPERUSER", "AlterRoleSetStmt": "ALTER ROLE agent SET search_path = evil",
	"DropRoleStmt": "DROP ROLE r", "CreateSeqStmt": "CREATE SEQUENCE sq", "AlterSeqStmt": "ALTER SEQUENCE sq RESTART",
	"DefineStmt": "CREATE AGGREGATE myagg (int) (SFUNC = int4pl, STYPE = int)", "CreateDomainStmt": "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
	"CreateOpClassStmt":  "CREATE OPERATOR CLASS oc FOR TYPE int USING btree AS OPERATOR 1 <",
	"CreateOpFamilyStmt": "CREATE OPERATOR FAMILY of USING btree", "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY of USING btree ADD OPERATOR 1 < (int, int)",
	"DropStmt": "DROP TABLE orders", "TruncateStmt": "TRUNCATE orders", "CommentStmt": "COMMENT ON COLUMN customers.email IS 'sluice:pii=email'",
	"SecLabelStmt":      "SECURITY LABEL ON TABLE customers IS 'x'",
	"DeclareCursorStmt": "DECLARE c CURSOR FOR SELECT name FROM customers", "ClosePortalStmt": "CLOSE c", "FetchStmt": "FETCH 10 FROM c",
	"IndexStmt": "CREATE INDEX ON orders (customer_id)", "CreateStatsStmt": "CREATE STATISTICS st ON id, customer_id FROM orders",
	"AlterStatsStmt": "ALTER STATISTICS st SET STATISTICS 10", "CreateFunctionStmt": "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
	"AlterFunctionStmt": "ALTER FUNCTION f() SECURITY DEFINER", "DoStmt": "DO 'BEGIN NULL; END'", "CallStmt": "CALL p()",
	"RenameStmt": "ALTER TABLE orders RENAME TO orders2", "AlterObjectDependsStmt": "ALTER FUNCTION f() DEPENDS ON EXTENSION dblink",
	"AlterObjectSchemaStmt": "ALTER TABLE orders SET SCHEMA staging", "AlterOwnerStmt": "ALTER FUNCTION f() OWNER TO agent",
	"AlterOperatorStmt": "ALTER OPERATOR = (int, int) SET (RESTRICT = eqsel)", "AlterTypeStmt": "ALTER TYPE pair SET (STORAGE = plain)",
	"RuleStmt":   "CREATE RULE r AS ON INSERT TO orders DO INSTEAD NOTHING",
	"NotifyStmt": "NOTIFY jobs, 'x'", "ListenStmt": "LISTEN jobs", "UnlistenStmt": "UNLISTEN *", "TransactionStmt": "BEGIN",
	"CompositeTypeStmt": "CREATE TYPE pair AS (a int, b text)", "CreateEnumStmt": "CREATE TYPE mood AS ENUM ('ok', 'sad')",
	"CreateRangeStmt": "CREATE TYPE floatrange AS RANGE (subtype = float8)", "AlterEnumStmt": "ALTER TYPE mood ADD VALUE 'glad'",
	"ViewStmt": "CREATE VIEW v2 AS SELECT name FROM customers", "LoadStmt": "LOAD 'auto_explain'", "CreatedbStmt": "CREATE DATABASE other",
	"AlterDatabaseStmt": "ALTER DATABASE sluice_demo ALLOW_CONNECTIONS false", "AlterDatabaseRefreshCollStmt": "ALTER DATABASE sluice_demo REFRESH COLLATION VERSION",
	"AlterDatabaseSetStmt": "ALTER DATABASE sluice_demo SET search_path = evil", "DropdbStmt": "DROP DATABASE other",
	"AlterSystemStmt": "ALTER SYSTEM SET fsync = off", "ClusterStmt": "CLUSTER orders USING orders_pkey", "VacuumStmt": "VACUUM orders",
	"ExplainStmt": "EXPLAIN SELECT name FROM customers", "CreateTableAsStmt": "CREATE TABLE t3 AS SELECT name FROM customers",
	"RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW mv", "CheckPointStmt": "CHECKPOINT", "DiscardStmt": "DISCARD ALL",
	"LockStmt": "LOCK TABLE orders IN SHARE MODE", "ConstraintsSetStmt": "SET CONSTRAINTS ALL DEFERRED", "ReindexStmt": "REINDEX TABLE orders",
	"CreateConversionStmt": "CREATE CONVERSION cv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
	"CreateCastStmt":       "CREATE CAST (int AS text) WITH INOUT", "CreateTransformStmt": "CREATE TRANSFORM FOR int LANGUAGE sql (FROM SQL WITH FUNCTION f(internal))",
	"PrepareStmt": "PREPARE q AS SELECT name FROM customers", "ExecuteStmt": "EXECUTE q", "DeallocateStmt": "DEALLOCATE q",
	"DropOwnedStmt": "DROP OWNED BY r", "ReassignOwnedStmt": "REASSIGN OWNED BY r TO agent",
	"AlterTsdictionaryStmt":    "ALTER TEXT SEARCH DICTIONARY simple (StopWords = english)",
	"AlterTsconfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION english DROP MAPPING FOR word",
	"CreatePublicationStmt":    "CREATE PUBLICATION pub FOR ALL TABLES", "AlterPublicationStmt": "ALTER PUBLICATION pub ADD TABLE orders",
	"CreateSubscriptionStmt": "CREATE SUBSCRIPTION sub CONNECTION 'host=h' PUBLICATION pub",
	"AlterSubscriptionStmt":  "ALTER SUBSCRIPTION sub DISABLE", "DropSubscriptionStmt": "DROP SUBSCRIPTION sub",
}

// pgStatementNodes are the statement types in pg_query's grammar.
func pgStatementNodes() []string {
	var out []string
	od := (&pg.Node{}).ProtoReflect().Descriptor().Oneofs().ByName("node")
	for i := 0; i < od.Fields().Len(); i++ {
		// The Go wrapper's name, as the analyzer sees it (%T): the field
		// name in CamelCase (alter_tsconfiguration_stmt: AlterTsconfigurationStmt).
		var name string
		for _, part := range strings.Split(string(od.Fields().Get(i).Name()), "_") {
			name += strings.ToUpper(part[:1]) + part[1:]
		}
		if strings.HasSuffix(name, "Stmt") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// coverageRow is one statement type as sluice reads it.
type coverageRow struct{ node, example, reading string }

func readingOf(a Analysis) string {
	if a.Err != nil {
		return "refused: " + a.Err.Error()
	}
	var parts []string
	for _, st := range a.Statements {
		var reqs []string
		for _, r := range st.Requests {
			o := r.Object.Kind.String()
			if r.Object.Name != "" {
				o += " " + strings.TrimPrefix(r.Object.Schema+"."+r.Object.Name, ".")
			}
			reqs = append(reqs, r.Action+" on "+o)
		}
		if len(reqs) == 0 {
			reqs = append(reqs, "no request")
		}
		parts = append(parts, "`"+st.Kind+"`: "+strings.Join(reqs, ", "))
	}
	return strings.Join(parts, "; ")
}

func pgCoverage(t *testing.T) []coverageRow {
	t.Helper()
	var rows []coverageRow
	for _, node := range pgStatementNodes() {
		if why, ok := pgNotStatements[node]; ok {
			rows = append(rows, coverageRow{node, "", "not a statement of its own: " + why})
			continue
		}
		sql, ok := pgExamples[node]
		if !ok {
			t.Errorf("PostgreSQL statement type %s is not classified: add an example to pgExamples (and a case to the analyzer if it is not understood)", node)
			continue
		}
		tree, err := pg.Parse(sql)
		if err != nil || len(tree.Stmts) != 1 {
			t.Errorf("%s example %q does not parse to one statement: %v", node, sql, err)
			continue
		}
		if got := strings.TrimPrefix(fmt.Sprintf("%T", tree.Stmts[0].Stmt.Node), "*pg_query.Node_"); got != node {
			t.Errorf("%s example %q parses to %s", node, sql, got)
		}
		a := AnalyzePostgres(sql, demoCatalog())
		if a.Err != nil && strings.Contains(a.Err.Error(), "does not understand") {
			t.Errorf("%s: %q is not understood: %v", node, sql, a.Err)
		}
		rows = append(rows, coverageRow{node, sql, readingOf(a)})
	}
	for node := range pgExamples {
		if !slices.Contains(pgStatementNodes(), node) {
			t.Errorf("pgExamples names %s, which the grammar does not have", node)
		}
	}
	return rows
}

func TestStatementCoverage(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Statement coverage\n\n")
	b.WriteString("Generated by `go test ./policy -run TestStatementCoverage` (`SLUICE_UPDATE_COVERAGE=1` rewrites it); the test fails when either grammar has a statement type this table does not classify.\n\n")
	b.WriteString("Each row is one statement type of the grammar sluice parses with, an example, and how sluice reads the example: its kind and the Cedar requests it makes (actions on the database as a whole, a table, a schema or a function). Every request must be permitted by policy for the statement to run. An example that names an object the demo catalog lacks reads as that object's absence.\n\n")
	b.WriteString("## PostgreSQL (pg_query, PostgreSQL 17 grammar; sluice's targets run PostgreSQL 15)\n\n| Statement type | Example | sluice reads it as |\n|---|---|---|\n")
	for _, r := range pgCoverage(t) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.node, cell(r.example), text(r.reading))
	}
	b.WriteString("\n## MySQL / MariaDB (TiDB parser)\n\n| Statement type | Example | sluice reads it as |\n|---|---|---|\n")
	for _, r := range myCoverage(t) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.node, cell(r.example), text(r.reading))
	}
	b.WriteString("\nMariaDB statements the TiDB parser cannot read are refused (`cannot parse statement`): sluice decides only what it can read with a grammar. Those below are checked to stay so; should the parser learn one, this test fails until it is classified above.\n\n| Statement | sluice reads it as |\n|---|---|\n")
	cat := NewStaticCatalog(1, map[string][]string{"sluice_demo.customers": {"id", "name"}})
	for _, sql := range myUnparsed {
		a := AnalyzeMySQL(sql, MySQLSession{Database: "sluice_demo", Version: 101119, MariaDB: true}, cat)
		if a.Err == nil || !strings.Contains(a.Err.Error(), "cannot parse") {
			t.Errorf("%q is no longer refused as unparseable (%v): classify it", sql, a.Err)
		}
		fmt.Fprintf(&b, "| %s | refused: cannot parse |\n", cell(sql))
	}
	const path = "../docs/statement-coverage.md"
	if os.Getenv("SLUICE_UPDATE_COVERAGE") != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil || string(have) != b.String() {
		t.Errorf("%s is out of date: run SLUICE_UPDATE_COVERAGE=1 go test ./policy -run TestStatementCoverage", path)
	}
}

func cell(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "`", "'") + "`"
}

// TiDB parser statement types that are not statements of their own.
var myNotStatements = map[string]string{
	"ddlNode": "the parser's base of DDL statements", "dmlNode": "the parser's base of DML statements",
	"QueryWatchOption": "an option of QUERY WATCH (TiDB)", "DynamicCalibrateResourceOption": "an option of CALIBRATE RESOURCE (TiDB)",
	"SplitIndexOption": "an option of SPLIT (TiDB)", "SplitOption": "an option of SPLIT (TiDB)",
	"ImportIntoActionStmt": "an action on an IMPORT INTO job (TiDB)",
}

// procedureParts are parts of a stored procedure's body: a CREATE
// PROCEDURE is decided as a whole (a create), never statement by statement.
var procedureParts = []string{"ProcedureBlock", "ProcedureCloseCur", "ProcedureElseBlock", "ProcedureElseIfBlock",
	"ProcedureErrorCondition", "ProcedureFetchInto", "ProcedureIfBlock", "ProcedureIfInfo", "ProcedureJump",
	"ProcedureLabelBlock", "ProcedureLabelLoop", "ProcedureOpenCur", "ProcedureRepeatStmt", "ProcedureWhileStmt",
	"SearchCaseStmt", "SimpleCaseStmt", "SearchWhenThenStmt", "SimpleWhenThenStmt"}

// tidbOnly are statements of TiDB's own dialect, which MySQL and MariaDB
// reject: refused as not understood, deliberately.
var tidbOnly = []string{"AddQueryWatchStmt", "AdminStmt", "AlterPlacementPolicyStmt", "AlterRangeStmt",
	"AlterResourceGroupStmt", "BRIEStmt", "CalibrateResourceStmt", "CancelDistributionJobStmt", "CleanupTableLockStmt",
	"CompactTableStmt", "CreateBindingStmt", "CreateMaskingPolicyStmt", "CreatePlacementPolicyStmt",
	"CreateResourceGroupStmt", "CreateStatisticsStmt", "DistributeTableStmt", "DropBindingStmt",
	"DropPlacementPolicyStmt", "DropQueryWatchStmt", "DropResourceGroupStmt", "DropStatisticsStmt", "DropStatsStmt",
	"FlashBackDatabaseStmt", "FlashBackTableStmt", "FlashBackToTimestampStmt", "ImportIntoStmt", "LoadStatsStmt",
	"LockStatsStmt", "NonTransactionalDMLStmt", "PlanReplayerStmt", "RecommendIndexStmt", "RecoverTableStmt",
	"RefreshStatsStmt", "SetBindingStmt", "SetConfigStmt", "SetResourceGroupStmt", "SetSessionStatesStmt",
	"SplitRegionStmt", "TraceStmt", "TrafficStmt", "UnlockStatsStmt", "RepairTableStmt", "SetCharsetStmt"}

var myExamples = map[string]string{
	"AlterDatabaseStmt": "ALTER DATABASE sluice_demo CHARACTER SET utf8mb4", "AlterInstanceStmt": "ALTER INSTANCE RELOAD TLS",
	"AlterSequenceStmt": "ALTER SEQUENCE s RESTART", "AlterTableStmt": "ALTER TABLE orders ADD COLUMN note text",
	"AlterUserStmt": "ALTER USER agent IDENTIFIED BY 'x'", "AnalyzeTableStmt": "ANALYZE TABLE customers",
	"BeginStmt": "BEGIN", "BinlogStmt": "BINLOG 'AAAA'", "CallStmt": "CALL p()", "CommitStmt": "COMMIT",
	"CreateDatabaseStmt": "CREATE DATABASE other", "CreateIndexStmt": "CREATE INDEX i ON customers (name)",
	"CreateSequenceStmt": "CREATE SEQUENCE s", "CreateTableStmt": "CREATE TABLE t2 (a int, b text)",
	"CreateUserStmt": "CREATE USER u IDENTIFIED BY 'x'", "CreateViewStmt": "CREATE VIEW v2 AS SELECT name FROM customers",
	"DeallocateStmt": "DEALLOCATE PREPARE q", "DeleteStmt": "DELETE FROM orders WHERE id = 1", "DoStmt": "DO 1",
	"DropDatabaseStmt": "DROP DATABASE other", "DropIndexStmt": "DROP INDEX i ON customers", "DropProcedureStmt": "DROP PROCEDURE p",
	"DropSequenceStmt": "DROP SEQUENCE s", "DropTableStmt": "DROP TABLE orders", "DropUserStmt": "DROP USER u",
	"ExecuteStmt": "EXECUTE q", "ExplainForStmt": "EXPLAIN FOR CONNECTION 1", "ExplainStmt": "EXPLAIN SELECT name FROM customers",
	"FlushStmt": "FLUSH TABLES", "GrantProxyStmt": "GRANT PROXY ON 'a'@'%' TO 'b'@'%'", "GrantRoleStmt": "GRANT r TO agent",
	"GrantStmt": "GRANT SELECT ON sluice_demo.* TO agent", "HelpStmt": "HELP 'select'", "InsertStmt": "INSERT INTO orders (id) VALUES (1)",
	"KillStmt": "KILL 1", "LoadDataStmt": "LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE customers", "LockTablesStmt": "LOCK TABLES customers READ",
	"OptimizeTableStmt": "OPTIMIZE TABLE customers", "PrepareStmt": "PREPARE q FROM 'SELECT 1'",
	"ProcedureInfo": "CREATE PROCEDURE p() BEGIN SELECT 1; END", "ReleaseSavepointStmt": "RELEASE SAVEPOINT s",
	"RenameTableStmt": "RENAME TABLE orders TO orders2", "RenameUserStmt": "RENAME USER a TO b", "RestartStmt": "RESTART",
	"RevokeRoleStmt": "REVOKE r FROM agent", "RevokeStmt": "REVOKE SELECT ON sluice_demo.* FROM agent", "RollbackStmt": "ROLLBACK",
	"SavepointStmt": "SAVEPOINT s", "SelectStmt": "SELECT name FROM customers", "SetDefaultRoleStmt": "SET DEFAULT ROLE r TO agent",
	"SetOprStmt": "SELECT 1 UNION SELECT 2", "SetPwdStmt": "SET PASSWORD = PASSWORD('x')", "SetRoleStmt": "SET ROLE r",
	"SetStmt": "SET @a = 1", "ShowStmt": "SHOW TABLES", "ShutdownStmt": "SHUTDOWN", "TruncateTableStmt": "TRUNCATE TABLE orders",
	"UnlockTablesStmt": "UNLOCK TABLES", "UpdateStmt": "UPDATE orders SET id = 2 WHERE id = 1", "UseStmt": "USE sluice_demo",
}

// tidbStatementTypes lists the TiDB parser's statement types from its
// source: the structs that embed stmtNode, ddlNode or dmlNode.
func tidbStatementTypes(t *testing.T) []string {
	t.Helper()
	dir := tidbAST(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var types []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := goparser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			gd, ok := d.(*goast.GenDecl)
			if !ok {
				continue
			}
			for _, sp := range gd.Specs {
				ts, ok := sp.(*goast.TypeSpec)
				if !ok {
					continue
				}
				st, ok := ts.Type.(*goast.StructType)
				if !ok {
					continue
				}
				for _, fl := range st.Fields.List {
					if id, ok := fl.Type.(*goast.Ident); ok && len(fl.Names) == 0 && (id.Name == "stmtNode" || id.Name == "ddlNode" || id.Name == "dmlNode") {
						types = append(types, ts.Name.Name)
						break
					}
				}
			}
		}
	}
	slices.Sort(types)
	return slices.Compact(types)
}

func myCoverage(t *testing.T) []coverageRow {
	t.Helper()
	cat := NewStaticCatalog(1, map[string][]string{
		"sluice_demo.customers": {"id", "name", "email", "ssn"}, "sluice_demo.orders": {"id", "customer_id", "total_cents"},
	})
	env := MySQLSession{Database: "sluice_demo", Version: 101119, MariaDB: true}
	types := tidbStatementTypes(t)
	var rows []coverageRow
	for _, typ := range types {
		switch {
		case myNotStatements[typ] != "":
			rows = append(rows, coverageRow{typ, "", "not a statement of its own: " + myNotStatements[typ]})
			continue
		case slices.Contains(procedureParts, typ):
			rows = append(rows, coverageRow{typ, "", "not a statement of its own: part of a stored procedure's body, decided with its CREATE PROCEDURE"})
			continue
		case slices.Contains(tidbOnly, typ):
			rows = append(rows, coverageRow{typ, "", "refused (deliberately): TiDB's own dialect, which MySQL and MariaDB do not accept"})
			continue
		}
		sql, ok := myExamples[typ]
		if !ok {
			t.Errorf("TiDB statement type %s is not classified: add an example to myExamples, or list it as TiDB-only", typ)
			continue
		}
		nodes, _, err := parser.New().ParseSQL(sql)
		if err != nil || len(nodes) != 1 {
			t.Errorf("%s example %q does not parse to one statement: %v", typ, sql, err)
			continue
		}
		if got := strings.TrimPrefix(fmt.Sprintf("%T", nodes[0]), "*ast."); got != typ {
			t.Errorf("%s example %q parses to %s", typ, sql, got)
		}
		a := AnalyzeMySQL(sql, env, cat)
		if a.Err != nil && strings.Contains(a.Err.Error(), "does not understand") {
			t.Errorf("%s: %q is not understood: %v", typ, sql, a.Err)
		}
		rows = append(rows, coverageRow{typ, sql, readingOf(a)})
	}
	for typ := range myExamples {
		if !slices.Contains(types, typ) {
			t.Errorf("myExamples names %s, which the parser does not have", typ)
		}
	}
	return rows
}

func text(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// myUnparsed are MariaDB 10.11 statements the TiDB parser rejects.
var myUnparsed = []string{
	"CHECK TABLE customers", "CHECKSUM TABLE customers", "REPAIR TABLE customers",
	"HANDLER customers OPEN", "XA START 'x'", "CREATE TRIGGER tr BEFORE INSERT ON customers FOR EACH ROW SET NEW.name = 'x'",
	"CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO DELETE FROM customers", "CREATE FUNCTION f() RETURNS int RETURN 1",
	"SIGNAL SQLSTATE '45000'", "GET DIAGNOSTICS @n = NUMBER", "INSTALL SONAME 'ha_blackhole'",
	"SHOW EXPLAIN FOR 1", "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST 'h')",
	"BACKUP STAGE START", "CREATE PACKAGE pk AS PROCEDURE p(); END",
}

// tidbAST is the TiDB parser's ast package source folder.
func tidbAST(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/pingcap/tidb/pkg/parser").Output()
	if err != nil {
		t.Fatalf("cannot find the TiDB parser's source: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "ast")
}

// outputNames lists a statement's result column names, space-separated.
func outputNamesOf(st Statement) string {
	var names []string
	for _, o := range st.Outputs {
		names = append(names, o.Name)
	}
	return strings.Join(names, " ")
}
