package e2e

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/devstack"
)

// Class 1: settings that change how the server reads SQL. Each attack
// tries to make the server read a statement sluice read as harmless as a
// write (a DELETE of orders) or a masked column as a string; the
// database's log shows what it ran, and its row count that nothing went.

const smuggled = "DELETE FROM orders"

func TestAttackPostgresLexicalSettings(t *testing.T) {
	conn := analystPG(t)
	ctx := context.Background()
	before := pgCount(t, "SELECT count(*) FROM orders")
	log := dbLog(t)
	for _, tc := range []struct{ name, sql string }{
		{"SET standard_conforming_strings off", "SET standard_conforming_strings = off"},
		{"SET SESSION … TO", "SET SESSION standard_conforming_strings TO 'off'"},
		{"SET LOCAL", "BEGIN; SET LOCAL standard_conforming_strings = false; COMMIT"},
		{"set_config", "SELECT set_config('standard_conforming_strings', 'off', false)"},
		{"set_config, schema-qualified", "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', true)"},
		{"set_config, computed name", "SELECT set_config('standard_conforming_' || 'strings', 'off', false)"},
		{"set_config, name from a table", "SELECT set_config(c, 'off', false) FROM (VALUES ('standard_conforming_strings')) v(c)"},
		{"SET inside a multi-statement", "SELECT 1; SET standard_conforming_strings = off"},
		{"client_encoding SJIS", "SET client_encoding = 'SJIS'"},
		{"SET NAMES GBK", "SET NAMES 'GBK'"},
		{"client_encoding alias", "SET client_encoding TO 'Shift-JIS'"},
		{"client_encoding via set_config", "SELECT set_config('client_encoding', 'BIG5', false)"},
		{"backslash_quote on", "SET backslash_quote = on"},
		{"PREPARE of a set_config", "PREPARE p AS SELECT set_config('standard_conforming_strings', 'off', false)"},
		{"DO block", "DO $$ BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END $$"},
	} {
		_, err := conn.Exec(ctx, tc.sql, pgx.QueryExecModeSimpleProtocol)
		if err == nil {
			t.Errorf("%s: %q ran", tc.name, tc.sql)
		}
	}
	// The setting stays on, however it is reset: sluice pinned it at startup.
	for _, sql := range []string{"RESET standard_conforming_strings", "RESET ALL", "DISCARD ALL", "SET standard_conforming_strings TO DEFAULT"} {
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
		var v string
		if err := conn.QueryRow(ctx, "SHOW standard_conforming_strings", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil || v != "on" {
			t.Errorf("after %s: standard_conforming_strings %q %v", sql, v, err)
		}
	}
	// With the settings pinned, the classic smuggling reads as one literal
	// on both sides: a SELECT, and nothing else.
	for _, sql := range []string{
		`SELECT 'a\'; ` + smuggled + `; --'`,
		`SELECT E'a\'; ` + smuggled + `; --'`,
		`SELECT $q$ ' $q$; ` + smuggled,
		`SELECT 1 /* /* */ ` + smuggled + `; */`,
		`SELECT U&'\0061'; ` + smuggled,
	} {
		_, _ = conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	}
	pgLog, _ := log()
	notRun(t, pgLog, "standard_conforming_strings = off", "set_config(", "client_encoding = 'SJIS'", "SET NAMES 'GBK'", "backslash_quote = on")
	if after := pgCount(t, "SELECT count(*) FROM orders"); after != before {
		t.Fatalf("orders went from %d to %d", before, after)
	}
}

// Settings the client could bring at startup or the database could hold
// for the login: the startup refusal, sluice's own startup value, and the
// server's report all keep the session readable.
func TestAttackPostgresStartupAndRoleSettings(t *testing.T) {
	addr := ownerConnect(t, devstack.DemoTarget, "attacker", []string{"analysts"})
	url := stack.AgentURL(addr)
	ctx := context.Background()
	// Startup parameters: options and unsafe encodings are refused.
	for _, env := range [][]string{{"PGOPTIONS=-c standard_conforming_strings=off"}, {"PGCLIENTENCODING=SJIS"}, {"PGCLIENTENCODING=BIG5"}} {
		cmd := exec.Command("psql", url, "-X", "-w", "-c", "SELECT 1")
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("%v: psql connected:\n%s", env, out)
		}
	}
	// The login's stored default is overridden by sluice's startup value.
	if err := stack.PG.Exec(ctx, "postgres", "ALTER ROLE "+devstack.AgentDBUser+" SET standard_conforming_strings = off"); err != nil {
		t.Fatal(err)
	}
	defer stack.PG.Exec(ctx, "postgres", "ALTER ROLE "+devstack.AgentDBUser+" RESET standard_conforming_strings")
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := c.QueryRow(ctx, "SHOW standard_conforming_strings", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil || v != "on" {
		t.Errorf("with the role's default off: %q %v", v, err)
	}
	if _, err := c.Exec(ctx, "RESET ALL", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SHOW standard_conforming_strings", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil || v != "on" {
		t.Errorf("RESET ALL with the role's default off: %q %v", v, err)
	}
	c.Close(ctx)
	// An encoding the login defaults to is reported by the server: the
	// session ends rather than carry SQL sluice cannot read.
	if err := stack.PG.Exec(ctx, "postgres", "ALTER ROLE "+devstack.AgentDBUser+" SET client_encoding = 'SJIS'"); err != nil {
		t.Fatal(err)
	}
	defer stack.PG.Exec(ctx, "postgres", "ALTER ROLE "+devstack.AgentDBUser+" RESET client_encoding")
	cfg, _ := pgx.ParseConfig(url)
	delete(cfg.RuntimeParams, "client_encoding") // let the role's default apply
	if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		err = c.QueryRow(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(new(int))
		c.Close(ctx)
		if err == nil {
			t.Error("a session in SJIS ran statements")
		}
	}
}

func TestAttackMySQLLexicalSettings(t *testing.T) {
	db := analystMySQL(t)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before := myCount(t, "SELECT count(*) FROM orders")
	log := dbLog(t)
	for _, tc := range []struct{ name, sql string }{
		{"mode change then smuggling, one string", `SET sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT 'a\'; ` + smuggled + `; -- '`},
		{"SET NAMES then more", "SET NAMES latin1; SELECT 1"},
		{"ORACLE grammar", "SET sql_mode = ORACLE"},
		{"MSSQL", "SET SESSION sql_mode = 'MSSQL'"},
		{"computed mode", "SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"},
		{"mode from a variable", "SET @m = 'ANSI_QUOTES'; SET sql_mode = @m"},
		{"DEFAULT", "SET sql_mode = DEFAULT"},
		{"SET STATEMENT", `SET STATEMENT sql_mode = 'ANSI_QUOTES' FOR SELECT "email" FROM customers`},
		{"gbk", "SET NAMES gbk"},
		{"character_set_client big5", "SET character_set_client = 'big5'"},
		{"@@session sjis", "SET @@session.character_set_client = 'sjis'"},
		{"CHARACTER SET cp932", "SET CHARACTER SET cp932"},
		{"executable comment", "/*!40101 SET NAMES gbk */"},
		{"MariaDB comment", "/*M!100000 SET NAMES gbk */"},
	} {
		if _, err := conn.ExecContext(ctx, tc.sql); err == nil {
			t.Errorf("%s: %q ran", tc.name, tc.sql)
		}
	}
	// Allowed changes are followed: sluice reads the next statements as
	// the server does.
	if _, err := conn.ExecContext(ctx, "SET sql_mode = 'NO_BACKSLASH_ESCAPES'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT 'a\'; `+smuggled+`; -- '`); err == nil {
		t.Error("NO_BACKSLASH_ESCAPES smuggling ran")
	}
	if _, err := conn.ExecContext(ctx, "SET @@session.sql_mode = 'ANSI_QUOTES'"); err != nil {
		t.Fatal(err)
	}
	var email string
	if err := conn.QueryRowContext(ctx, `SELECT "email" FROM customers WHERE id = 1`).Scan(&email); err != nil || !strings.Contains(email, "***") {
		t.Errorf(`ANSI_QUOTES "email": %q %v`, email, err)
	}
	// An ANSI identifier has no backslash escapes: "\" ends it, so what
	// follows is the server's next statement.
	if _, err := conn.ExecContext(ctx, `SELECT 1 "\"; `+smuggled+`; SELECT "`); err == nil {
		t.Error(`ANSI_QUOTES "\" smuggling ran`)
	}
	if err := conn.QueryRowContext(ctx, `SELECT email "\" FROM customers WHERE id = 1`).Scan(&email); err != nil || !strings.Contains(email, "***") {
		t.Errorf(`ANSI_QUOTES alias "\": %q %v`, email, err)
	}
	if _, err := conn.ExecContext(ctx, "/*!40101 SET sql_mode = '' */"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, `SELECT "email" FROM customers WHERE id = 1`).Scan(&email); err != nil || email != "email" {
		t.Errorf(`default mode "email" is a string: %q %v`, email, err)
	}
	// Executable comments run as MariaDB runs them: a MySQL 5.7 version
	// comment is skipped, so the masks stay where the server's columns are.
	var v1 string
	if err := conn.QueryRowContext(ctx, `SELECT /*!50700 name, */ email FROM customers WHERE id = 1`).Scan(&v1); err != nil || !strings.Contains(v1, "***") {
		t.Errorf("version comment: %q %v", v1, err)
	}
	// latin1 reads 0xA0 as a space: "--" before it is a comment to the
	// server, and a space between tokens; control characters likewise.
	latin := analystMySQLCharset(t, "latin1")
	for _, sql := range []string{
		"SELECT 1 --\xa0'\n; " + smuggled + "; SELECT '",
		"SELECT email\xa0FROM customers WHERE id = 1",
		"SELECT 1 --\x01'\n; " + smuggled + "; SELECT '",
		"SELECT 1 # \x00'\n; " + smuggled + "; SELECT '",
		"SELECT 1 /*T! , 'c' */",
	} {
		rows, err := latin.QueryContext(ctx, sql)
		if err != nil {
			continue
		}
		cols, _ := rows.Columns()
		rows.Close()
		if len(cols) != 1 || strings.Contains(sql, "email") {
			t.Errorf("%q ran with columns %v", sql, cols)
		}
	}
	_, myLog := log()
	notRun(t, myLog, smuggled, "ORACLE", "MSSQL", "SET NAMES gbk", "big5", "sjis", "cp932")
	if after := myCount(t, "SELECT count(*) FROM orders"); after != before {
		t.Fatalf("orders went from %d to %d", before, after)
	}
}

// A client asking for gbk in its handshake: the session's real character
// set, read from the server after login, ends it.
func TestAttackMySQLHandshakeCharset(t *testing.T) {
	addr := ownerConnect(t, mysqlTarget, "attacker", []string{"analysts"})
	dsn := stack.MySQLDSN(addr) + "&collation=gbk_chinese_ci"
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); err == nil {
		t.Fatal("a gbk session ran a statement")
	}
}

// COM_RESET_CONNECTION returns sql_mode to the server's default: sluice
// reads it again, so ANSI_QUOTES set before the reset no longer applies.
func TestAttackMySQLResetConnection(t *testing.T) {
	m := dialRawMySQL(t, ownerConnect(t, mysqlTarget, "attacker", []string{"analysts"}))
	m.send(comQuery("SET sql_mode = 'ANSI_QUOTES'"))
	m.drain()
	m.send([]byte{0x1f}) // COM_RESET_CONNECTION
	m.drain()
	m.send(comQuery(`SELECT "email" FROM customers WHERE id = 1`))
	if out := m.drain(); realValue(out) || !strings.Contains(out, "email") {
		t.Fatalf("after the reset: %q", out)
	}
}
