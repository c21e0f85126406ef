package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/devstack"
)

// pgRows runs sql through conn (simple protocol) and returns its rows as
// text, or the error.
func pgRows(conn *pgx.Conn, sql string) (string, error) {
	rows, err := conn.Query(context.Background(), sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for rows.Next() {
		for _, v := range rows.RawValues() {
			out.Write(v)
			out.WriteString("|")
		}
		out.WriteString("\n")
	}
	rows.Close()
	return out.String(), rows.Err()
}

// Class 3: objects that hide what they read. A privileged user made views,
// a materialized view, a rule and a partition over the tagged columns;
// the analyst reads them masked and may not filter on them.
func TestAttackObjectsHidingWhatTheyRead(t *testing.T) {
	ctx := context.Background()
	setup := `
DROP VIEW IF EXISTS v_nested, v_contacts CASCADE;
DROP MATERIALIZED VIEW IF EXISTS mv_contacts;
DROP TABLE IF EXISTS leak_log, people CASCADE;
CREATE VIEW v_contacts AS SELECT id, name AS who, email AS mail, ssn AS tax FROM customers;
CREATE VIEW v_nested AS SELECT who, upper(mail) AS shout, tax FROM v_contacts;
CREATE MATERIALIZED VIEW mv_contacts AS SELECT id, email FROM customers;
CREATE TABLE leak_log (id serial, note text);
CREATE RULE leak AS ON INSERT TO leak_log DO ALSO SELECT email, ssn FROM customers WHERE id = 1;
CREATE TABLE people (id int, email text) PARTITION BY RANGE (id);
CREATE TABLE people_low PARTITION OF people FOR VALUES FROM (0) TO (100);
INSERT INTO people VALUES (1, 'customer1@example.com');
COMMENT ON COLUMN people.email IS 'sluice:pii=email';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO sluice_reader;`
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, "SET ROLE "+devstack.AgentDBUser+";"+setup); err != nil {
		t.Fatal(err)
	}
	conn := analystPG(t)
	for _, sql := range []string{
		"SELECT * FROM v_contacts WHERE id <= 2",
		"SELECT mail, tax FROM v_contacts WHERE id = 1",
		"SELECT * FROM v_nested",
		"SELECT * FROM mv_contacts",
		"SELECT row_to_json(v) FROM v_contacts v",
		"SELECT email FROM people_low",
		"SELECT * FROM people",
	} {
		out, err := pgRows(conn, sql)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if realValue(out) {
			t.Errorf("%s: real values:\n%s", sql, out)
		}
	}
	for _, sql := range []string{
		"SELECT id FROM v_contacts WHERE mail LIKE 'customer1%'",
		"SELECT id FROM mv_contacts ORDER BY email",
		"SELECT count(*) FROM people_low WHERE email = 'customer1@example.com'",
	} {
		if _, err := pgRows(conn, sql); err == nil {
			t.Errorf("%s: filtering on a masked column through an object ran", sql)
		}
	}
	// The rule's SELECT returns customers' emails to whoever inserts.
	mig := ownerConnect(t, devstack.DemoTarget, "writer", []string{"migrators"})
	mc, err := pgx.Connect(ctx, stack.AgentURL(mig))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close(ctx)
	out, err := pgRows(mc, "INSERT INTO leak_log (note) VALUES ('x')")
	if err != nil || realValue(out) {
		t.Errorf("insert through a rule returning emails: %v\n%s", err, out)
	}
	// MariaDB views.
	if err := stack.Maria.Exec(ctx, "USE "+devstack.DemoDatabase+"; CREATE OR REPLACE VIEW v_contacts AS SELECT id, name AS who, email AS mail FROM customers; CREATE OR REPLACE VIEW v_nested AS SELECT who, upper(mail) AS shout FROM v_contacts"); err != nil {
		t.Fatal(err)
	}
	db := analystMySQL(t)
	for _, sql := range []string{"SELECT mail FROM v_contacts WHERE id = 1", "SELECT shout FROM v_nested LIMIT 1", "SELECT * FROM v_contacts LIMIT 2"} {
		rows, err := db.Query(sql)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		cols, _ := rows.Columns()
		var all []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			_ = rows.Scan(ptrs...)
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					all = append(all, string(b))
				}
			}
		}
		rows.Close()
		if realValue(strings.Join(all, "\n")) {
			t.Errorf("%s: real values %v", sql, all)
		}
	}
	if _, err := db.Exec("SELECT id FROM v_contacts WHERE mail LIKE 'c%'"); err == nil {
		t.Error("MySQL: filtering a view on a masked column ran")
	}
}

// Class 4: the second target on the same database (demo-scrubbed) sees
// the tags the first one's entity data declares.
func TestAttackTagsBelongToTheData(t *testing.T) {
	conn, err := pgx.Connect(context.Background(), stack.AgentURL(ownerConnect(t, devstack.DemoTarget+"-scrubbed", "attacker", []string{"analysts"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	out, err := pgRows(conn, "SELECT email, ssn FROM customers WHERE id <= 3")
	if err != nil || realValue(out) || !strings.Contains(out, "***") {
		t.Errorf("through demo-scrubbed: %v\n%s", err, out)
	}
	if _, err := pgRows(conn, "SELECT id FROM customers WHERE email LIKE 'customer1%'"); err == nil {
		t.Error("filtering on a tagged column through demo-scrubbed ran")
	}
}

// Class 5: a strategy that keeps part of a value applies to the bare
// column only; anything derived from it is redacted.
func TestAttackPartialMasksOnDerivedValues(t *testing.T) {
	conn := analystPG(t)
	for _, sql := range []string{
		"SELECT reverse(email) FROM customers WHERE id = 1",
		"SELECT substr(ssn, 1, 5) FROM customers WHERE id = 1",
		"SELECT reverse(ssn) FROM customers WHERE id = 1",
		"SELECT left(email, 8) || right(ssn, 8) FROM customers WHERE id = 1",
		"SELECT ssn::varchar(6) FROM customers WHERE id = 1",
		"SELECT split_part(email, '@', 1) FROM customers WHERE id = 1",
		"SELECT translate(ssn, '0123456789', 'abcdefghij') FROM customers WHERE id = 1",
		"SELECT x FROM (SELECT reverse(email) AS x FROM customers WHERE id = 1) s",
		"SELECT string_agg(ssn, ',') FROM customers WHERE id <= 3",
		"SELECT ssn FROM customers WHERE id = 1 UNION ALL SELECT reverse(ssn) FROM customers WHERE id = 1",
	} {
		out, err := pgRows(conn, sql)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		for _, piece := range []string{"001-4", "1remotsuc", "6789", "customer1", "9876", "aab-ef"} {
			if strings.Contains(out, piece) {
				t.Errorf("%s: %q shows part of the value:\n%s", sql, piece, out)
			}
		}
	}
	// The bare column keeps its partial mask.
	if out, _ := pgRows(conn, "SELECT ssn, email::text FROM customers WHERE id = 1"); !strings.Contains(out, "*******6789") || !strings.Contains(out, "c***@example.com") {
		t.Errorf("bare columns: %s", out)
	}
	db := analystMySQL(t)
	var v string
	if err := db.QueryRow("SELECT reverse(email) FROM customers WHERE id = 1").Scan(&v); err != nil || strings.Contains(v, "remotsuc") {
		t.Errorf("MySQL reverse(email): %q %v", v, err)
	}
	if err := db.QueryRow("SELECT substr(ssn, 1, 5) FROM customers WHERE id = 1").Scan(&v); err != nil || strings.Contains(v, "001-4") {
		t.Errorf("MySQL substr(ssn): %q %v", v, err)
	}
}

// Password hashes and other sessions' statements: refused to agents;
// the catalogs clients need keep working.
func TestAttackCredentialAndSessionCatalogs(t *testing.T) {
	conn := analystPG(t)
	for _, sql := range []string{
		"SELECT rolpassword FROM pg_authid",
		"SELECT * FROM pg_catalog.pg_authid",
		"SELECT passwd FROM pg_shadow",
		"SELECT umoptions FROM pg_user_mappings",
		"SELECT query FROM pg_stat_activity",
		"SELECT * FROM pg_stat_activity",
		"SELECT pid FROM pg_stat_activity WHERE query LIKE '%password%'",
		"SELECT * FROM pg_stat_get_activity(NULL)",
		"SELECT (SELECT query FROM generate_series(1,1)) FROM pg_stat_activity",
	} {
		if out, err := pgRows(conn, sql); err == nil {
			t.Errorf("%s ran:\n%s", sql, out)
		}
	}
	for _, sql := range []string{
		"SELECT rolname FROM pg_roles",
		"SELECT pid, state FROM pg_stat_activity",
		"SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
		"SELECT typname FROM pg_type WHERE oid = 25",
	} {
		if _, err := pgRows(conn, sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
	// psql's \d and \dt, as an analyst runs them.
	url := stack.AgentURL(ownerConnect(t, devstack.DemoTarget, "attacker", []string{"analysts"}))
	for cmd, want := range map[string]string{`\d customers`: "email", `\dt`: "orders", `\dv`: "", `\dn`: "public"} {
		out, err := psql(t, url, cmd)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf(`%s: %v\n%s`, cmd, err, out)
		}
	}
	db := analystMySQL(t)
	for _, sql := range []string{
		"SELECT authentication_string FROM mysql.user",
		"SELECT Priv FROM mysql.global_priv",
		"SELECT info FROM information_schema.PROCESSLIST",
		"SHOW PROCESSLIST",
		"SHOW FULL PROCESSLIST",
		"SHOW CREATE USER agent",
	} {
		if _, err := db.Exec(sql); err == nil {
			t.Errorf("MySQL %s ran", sql)
		}
	}
}

// Row locks need the write group's lock action: a read-only role's
// SELECT … FOR UPDATE is refused, and no lock appears in the database.
func TestAttackRowLocks(t *testing.T) {
	conn := analystPG(t)
	log := dbLog(t)
	for _, sql := range []string{
		"SELECT * FROM orders WHERE id = 1 FOR UPDATE",
		"SELECT * FROM orders WHERE id = 1 FOR NO KEY UPDATE",
		"SELECT * FROM orders WHERE id = 1 FOR SHARE",
		"SELECT * FROM orders WHERE id = 1 FOR KEY SHARE",
		"SELECT * FROM orders o WHERE id = 1 FOR UPDATE OF o SKIP LOCKED",
		"SELECT * FROM (SELECT * FROM orders WHERE id = 1) s FOR UPDATE",
		"LOCK TABLE orders IN ACCESS EXCLUSIVE MODE",
	} {
		if _, err := pgRows(conn, sql); err == nil {
			t.Errorf("%s ran", sql)
		}
	}
	db := analystMySQL(t)
	for _, sql := range []string{
		"SELECT * FROM orders WHERE id = 1 FOR UPDATE",
		"SELECT * FROM orders WHERE id = 1 LOCK IN SHARE MODE",
		"SELECT * FROM orders WHERE id = 1 FOR SHARE",
		"LOCK TABLES orders WRITE",
	} {
		if _, err := db.Exec(sql); err == nil {
			t.Errorf("MySQL %s ran", sql)
		}
	}
	pgLog, myLog := log()
	notRun(t, pgLog, "FOR UPDATE", "FOR SHARE", "LOCK TABLE")
	notRun(t, myLog, "FOR UPDATE", "LOCK IN SHARE MODE", "LOCK TABLES")
}
