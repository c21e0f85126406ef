package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicedb/sluice/devstack"
)

// A table that does not exist gets the database's own error, code and
// text, through sluice as direct; the connection goes on; and a repeated
// miss costs no catalog read (the negative cache).
func TestIntrospectionMissingTable(t *testing.T) {
	ctx := context.Background()
	const q = "SELECT id FROM no_such_table WHERE id = 1"
	direct, err := pgx.Connect(ctx, stack.PG.URL(devstack.AgentDBUser, devstack.AgentDBPass, devstack.DemoDatabase))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	_, derr := direct.Exec(ctx, q)
	via := analystPG(t)
	var took []time.Duration
	for i := range 3 {
		start := time.Now()
		// Each text new: the session's memo of decisions does not answer.
		_, serr := via.Exec(ctx, fmt.Sprintf("SELECT id FROM no_such_table WHERE id = %d", i+2))
		took = append(took, time.Since(start))
		var dpe, spe *pgconn.PgError
		if !errors.As(derr, &dpe) || !errors.As(serr, &spe) {
			t.Fatalf("direct: %v; through sluice: %v", derr, serr)
		}
		if spe.Code != "42P01" || spe.Code != dpe.Code || spe.Message != dpe.Message || spe.Severity != "ERROR" {
			t.Fatalf("through sluice %s %q, direct %s %q", spe.Code, spe.Message, dpe.Code, dpe.Message)
		}
	}
	t.Logf("42P01 %q; through sluice in %v", derr.(*pgconn.PgError).Message, took)
	var n int
	if err := via.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 50 {
		t.Fatalf("after the miss: %d %v", n, err)
	}
	// Qualified, in the extended protocol too.
	if _, err := via.Exec(ctx, "SELECT * FROM public.no_such_table WHERE id = $1", 1); err == nil || !strings.Contains(err.Error(), `relation "public.no_such_table" does not exist (SQLSTATE 42P01)`) {
		t.Fatalf("qualified: %v", err)
	}
	// psql on its defaults shows it as PostgreSQL would.
	out, _, _ := psqlDefault(t, freeConnect(t, stack.TokenFile), devstack.DemoDatabase, nil, `\set VERBOSITY verbose`, q)
	if !strings.Contains(out, `ERROR:  42P01: relation "no_such_table" does not exist`) {
		t.Errorf("psql:\n%s", out)
	}

	// MySQL: 1146 (42S02), as MariaDB says it.
	root, err := stack.Maria.Root(devstack.DemoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, mderr := root.ExecContext(ctx, q)
	my := analystMySQL(t)
	_, mserr := my.ExecContext(ctx, q)
	var dme, sme *gomysql.MySQLError
	if !errors.As(mderr, &dme) || !errors.As(mserr, &sme) || sme.Number != 1146 || sme.Number != dme.Number || sme.Message != dme.Message || string(sme.SQLState[:]) != "42S02" {
		t.Fatalf("mysql: through sluice %v, direct %v", mserr, mderr)
	}
	var name string
	if err := my.QueryRowContext(ctx, "SELECT name FROM customers ORDER BY id LIMIT 1").Scan(&name); err != nil {
		t.Fatalf("mysql after the miss: %v", err)
	}
	out, _, _ = mysqlDefault(t, mysqlConnect(t), devstack.DemoDatabase, q)
	if !strings.Contains(out, "ERROR 1146 (42S02)") || !strings.Contains(out, "Table 'sluice_demo.no_such_table' doesn't exist") {
		t.Errorf("mysql client:\n%s", out)
	}
}

// A temporary table the session creates is known to its analysis, and
// values from a masked column stay masked when read back from it: created
// from a query, filled by INSERT … SELECT, in one string or over several.
func TestIntrospectionTempTableStaysMasked(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, `
	  DROP TABLE IF EXISTS temp_source;
	  CREATE TABLE temp_source (id int PRIMARY KEY, mail text);
	  COMMENT ON COLUMN temp_source.mail IS 'sluice:pii=email sluice:mask=token';
	  ALTER TABLE temp_source OWNER TO agent;
	  INSERT INTO temp_source VALUES (1, 'zed@real.example'), (2, 'amy@real.example');`); err != nil {
		t.Fatal(err)
	}
	// A builder may create tables and group by tokenized columns
	// (tokens-may-group), which lets values of mail flow into a table.
	conn, err := pgx.Connect(ctx, agentConnect(t, "temp-builder", []string{"migrators", "e2e-ddl"}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	col := func(sql string) []string {
		t.Helper()
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		for _, v := range vals {
			if strings.Contains(v, "@real.example") {
				t.Fatalf("%s: real value %q", sql, v)
			}
		}
		return vals
	}
	masked := col("SELECT mail FROM temp_source ORDER BY id")
	if len(masked) != 2 || !strings.HasPrefix(masked[0], "tok_") {
		t.Fatalf("source not tokenized: %v", masked)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE TEMP TABLE t_copy AS SELECT id, mail FROM temp_source")
	exec("CREATE TEMP TABLE t_plain (id int, m text)")
	exec("INSERT INTO t_plain SELECT id, mail FROM temp_source")
	exec("SELECT id, upper(mail) AS shout INTO TEMP t_derived FROM temp_source")
	for _, q := range []string{"SELECT mail FROM t_copy ORDER BY id", "SELECT m FROM t_plain ORDER BY id", "SELECT mail FROM pg_temp.t_copy ORDER BY id"} {
		if got := col(q); strings.Join(got, ",") != strings.Join(masked, ",") {
			t.Errorf("%s: %v, want the source's masked values %v", q, got, masked)
		}
	}
	if got := col("SELECT shout FROM t_derived ORDER BY id"); len(got) != 2 || strings.Contains(strings.ToLower(got[0]), "real.example") {
		t.Errorf("derived column: %v", got)
	}
	// In one simple-protocol string: created, filled and read.
	var out []string
	err = conn.PgConn().Exec(ctx, "CREATE TEMP TABLE t_one (m text); INSERT INTO t_one SELECT mail FROM temp_source; SELECT m FROM t_one ORDER BY m").Close()
	if err != nil {
		t.Fatalf("one string: %v", err)
	}
	out = col("SELECT m FROM t_one ORDER BY m")
	if len(out) != 2 {
		t.Fatalf("one string, read after: %v", out)
	}
	// A transaction rolled back takes its temp table along.
	exec("BEGIN")
	exec("CREATE TEMP TABLE t_gone (a int)")
	exec("INSERT INTO t_gone VALUES (1)")
	exec("ROLLBACK")
	_, err = conn.Exec(ctx, "SELECT a FROM t_gone")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42P01" {
		t.Fatalf("after ROLLBACK: %v", err)
	}
	// Another session does not see this one's temp tables.
	other := analystPG(t)
	if _, err := other.Exec(ctx, "SELECT mail FROM t_copy"); !errors.As(err, &pe) || pe.Code != "42P01" {
		t.Fatalf("another session: %v", err)
	}
	exec("DROP TABLE t_copy")
	if _, err := conn.Exec(ctx, "SELECT mail FROM t_copy"); !errors.As(err, &pe) || pe.Code != "42P01" {
		t.Fatalf("after DROP: %v", err)
	}
}

// psycopg's server-side (named) cursor: DECLARE and FETCH, the values
// masked with the cursor's plan.
func TestIntrospectionPsycopgServerCursor(t *testing.T) {
	python, err := filepath.Abs("../.venv/bin/python")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(freeConnect(t, stack.TokenFile), ":")
	prog := fmt.Sprintf(`
import psycopg
with psycopg.connect("host=%s port=%s user=agent dbname=sluice_demo") as conn:
    with conn.cursor(name="agent_cur") as cur:
        cur.itersize = 2
        cur.execute("SELECT name, email, ssn FROM customers ORDER BY id")
        print(cur.fetchmany(3))
        print(len(cur.fetchall()))
    with conn.cursor(name="held", withhold=True) as cur:
        cur.execute("SELECT email FROM customers ORDER BY id")
        for row in cur:
            print(row[0])
            break
`, host, port)
	cmd := exec.Command(python, "-c", prog)
	cmd.Env = newcomerEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psycopg server-side cursor: %v\n%s", err, out)
	}
	noPII(t, "psycopg cursor", string(out))
	for _, want := range []string{"('Customer 1', 'c***@example.com', '*******6789')", "\n47\n", "c***@example.com"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("psycopg cursor output lacks %q:\n%s", want, out)
		}
	}
}

// psql's describe commands as an analyst on psql's defaults: read-only
// introspection through builtins the catalog (pg_proc) says are stable or
// immutable. Builtins that read whole tables by name, other sessions'
// statements or server files stay refused.
func TestIntrospectionPsqlDescribe(t *testing.T) {
	addr := freeConnect(t, stack.TokenFile)
	for cmd, want := range map[string]string{
		`\d`: "customers", `\dt`: "customers", `\dn`: "public", `\df pg_catalog.now`: "timestamp with time zone",
		`\dv`: "", `\l`: "sluice_demo", `\du`: "agent", `\d customers`: "email", `\d+ customers`: "email",
		`\di`: "customers_pkey", `\dT`: "", `\dx`: "plpgsql", `\dp customers`: "customers", `\ds`: "customers_id_seq",
		"SELECT convert_to('x', 'UTF8'), pg_catalog.pg_get_userbyid(10) IS NOT NULL": "\\x78",
	} {
		out, _, err := psqlDefault(t, addr, devstack.DemoDatabase, nil, cmd)
		if err != nil || strings.Contains(out, "ERROR") || !strings.Contains(out, want) {
			t.Errorf("%s: %v\n%s", cmd, err, out)
		}
	}
	for q, policy := range map[string]string{
		"SELECT table_to_xml('customers', true, false, '')":                   "CALL on function table_to_xml",
		"SELECT pg_stat_get_backend_activity(1)":                              "CALL on function pg_stat_get_backend_activity",
		"SELECT pg_read_file('/etc/passwd')":                                  "no-admin",
		"SELECT query_to_xml('SELECT email FROM customers', true, false, '')": "query_to_xml",
		"SELECT nextval('customers_id_seq')":                                  "CALL on function nextval",
	} {
		out, _, _ := psqlDefault(t, addr, devstack.DemoDatabase, nil, q)
		if !strings.Contains(out, "ERROR:  sluice: ") || !strings.Contains(out, policy) {
			t.Errorf("%s was not refused naming %q:\n%s", q, policy, out)
		}
	}
}

// The mysql client's and drivers' introspection: SHOW and
// information_schema (whose table names are case-insensitive).
func TestIntrospectionMySQL(t *testing.T) {
	addr := mysqlConnect(t)
	for q, want := range map[string]string{
		"SHOW TABLES": "customers", "DESCRIBE customers": "email", "SHOW CREATE TABLE customers": "CREATE TABLE",
		"SHOW COLUMNS FROM customers": "email", "SHOW INDEX FROM customers": "PRIMARY", "SHOW FULL TABLES": "BASE TABLE",
		"SHOW DATABASES": "sluice_demo", "SHOW VARIABLES LIKE 'version'": "MariaDB", "SHOW GRANTS": "GRANT",
		"SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'sluice_demo' AND table_name = 'customers' ORDER BY ordinal_position": "email",
		"SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1":                                                              "orders",
		"DO 1": "",
	} {
		out, _, err := mysqlDefault(t, addr, devstack.DemoDatabase, q)
		if err != nil || strings.Contains(out, "ERROR") || !strings.Contains(out, want) {
			t.Errorf("%s: %v\n%s", q, err, out)
		}
	}
}

// MySQL's temporary tables, through go-sql-driver on one connection: a
// table created from a masked column, or filled from one, comes back
// masked.
func TestIntrospectionMySQLTempTableStaysMasked(t *testing.T) {
	ctx := context.Background()
	for _, q := range []string{
		"DROP TABLE IF EXISTS sluice_demo.temp_source",
		"CREATE TABLE sluice_demo.temp_source (id int PRIMARY KEY, mail text COMMENT 'sluice:pii=email sluice:mask=token')",
		"INSERT INTO sluice_demo.temp_source VALUES (1, 'zed@real.example'), (2, 'amy@real.example')",
		"GRANT ALL ON sluice_demo.* TO 'agent'@'%'",
	} {
		if err := stack.Maria.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db := mysqlAs(t, "my-builder", []string{"migrators", "e2e-ddl"})
	conn, err := db.Conn(ctx) // temporary tables live on one connection
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	col := func(q string) []string {
		t.Helper()
		rows, err := conn.QueryContext(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(v, "@real.example") {
				t.Fatalf("%s: real value %q", q, v)
			}
			out = append(out, v)
		}
		return out
	}
	masked := col("SELECT mail FROM temp_source ORDER BY id")
	if len(masked) != 2 || !strings.HasPrefix(masked[0], "tok_") {
		t.Fatalf("source not tokenized: %v", masked)
	}
	for _, q := range []string{
		"CREATE TEMPORARY TABLE t_copy AS SELECT id, mail FROM temp_source",
		"CREATE TEMPORARY TABLE t_plain (id int, m text)",
		"INSERT INTO t_plain SELECT id, mail FROM temp_source",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{"SELECT mail FROM t_copy ORDER BY id", "SELECT m FROM t_plain ORDER BY id"} {
		if got := col(q); strings.Join(got, ",") != strings.Join(masked, ",") {
			t.Errorf("%s: %v, want %v", q, got, masked)
		}
	}
	if _, err := conn.ExecContext(ctx, "DROP TEMPORARY TABLE t_copy"); err != nil {
		t.Fatal(err)
	}
	var me *gomysql.MySQLError
	if _, err := conn.ExecContext(ctx, "SELECT mail FROM t_copy"); !errors.As(err, &me) || me.Number != 1146 {
		t.Fatalf("after DROP: %v", err)
	}
}

// A table dropped and created again with other columns, in the same
// session: the analysis reads the new columns (the catalog is read again
// after DDL through sluice, and when a column is unknown).
func TestIntrospectionRecreatedTable(t *testing.T) {
	ctx := context.Background()
	db := mysqlAs(t, "my-recreate", []string{"migrators", "e2e-ddl"})
	for _, q := range []string{
		"DROP TABLE IF EXISTS recreated", "CREATE TABLE recreated (a int)", "INSERT INTO recreated VALUES (1)", "SELECT a FROM recreated",
		"DROP TABLE recreated", "CREATE TABLE recreated (ts datetime, b int)", "INSERT INTO recreated VALUES (NOW(), 2)", "SELECT ts, b FROM recreated",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn, err := pgx.Connect(ctx, agentConnect(t, "pg-recreate", []string{"migrators", "e2e-ddl"}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"DROP TABLE IF EXISTS recreated", "CREATE TABLE recreated (a int)", "SELECT a FROM recreated",
		"DROP TABLE recreated", "CREATE TABLE recreated (ts timestamptz, b int)", "SELECT ts, b FROM recreated",
		"BEGIN", "ALTER TABLE recreated ADD COLUMN c text", "SELECT c FROM recreated", "COMMIT", "SELECT c FROM recreated", "DROP TABLE recreated",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// mysqlAs is a go-sql-driver pool through its own connector, for an agent
// with groups.
func mysqlAs(t *testing.T, sub string, groups []string) *sql.DB {
	t.Helper()
	cfg, err := gomysql.ParseDSN(stack.MySQLDSN(connectTo(t, mysqlTarget, tokenFor(t, sub, groups))))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
