package policy

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

func reqs(a Analysis) string {
	var out []string
	for _, st := range a.Statements {
		for _, r := range st.Requests {
			o := r.Object
			name := o.Name
			if o.Kind == ObjectTable {
				name = o.Schema + "." + o.Name
			}
			out = append(out, fmt.Sprintf("%s:%s:%s", r.Action, o.Kind, name))
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestAnalyzePostgres(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"SELECT 1", ""},
		{"SELECT * FROM users", "select:table:public.users"},
		{"select * from app.Users u join orders o on o.uid = u.id", "select:table:app.users select:table:public.orders"},
		{"SeLeCt/**/x FROM t -- DROP TABLE t", "select:table:public.t"},
		{"DROP TABLE t", "drop:table:public.t"},
		{"drop table a, s.b", "drop:table:public.a drop:table:s.b"},
		{"DROP SCHEMA s CASCADE", "drop:schema:s"},
		{"INSERT INTO t SELECT * FROM u", "insert:table:public.t select:table:public.u"},
		{"UPDATE t SET a = 1 FROM u WHERE u.id = t.id", "select:table:public.u update:table:public.t"},
		{"DELETE FROM t USING u WHERE u.id = t.id", "delete:table:public.t select:table:public.u"},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "delete:table:public.t"},
		{"WITH x AS (SELECT * FROM t) SELECT * FROM x", "select:table:public.t"},
		{"SELECT * INTO newt FROM t", "create:table:public.newt select:table:public.t"},
		{"CREATE TABLE t (a int)", "create:table:public.t"},
		{"ALTER TABLE t ADD COLUMN b int", "alter:table:public.t"},
		{"TRUNCATE t", "truncate:table:public.t"},
		{"GRANT ALL ON t TO bob", "grant:target:"},
		{"SET ROLE admin", "set_role:target:"},
		{"SET search_path = evil", "set_search_path:target:"},
		{"SET statement_timeout = 0", "set:target:"},
		{"BEGIN", "transaction:target:"},
		{"SHOW work_mem", "show:target:"},
		{"COPY t FROM STDIN", "insert:table:public.t"},
		{"COPY t TO STDOUT", "select:table:public.t"},
		{"COPY t FROM PROGRAM 'id'", "copy_program:target: insert:table:public.t"},
		{"COPY (SELECT * FROM t) TO STDOUT", "select:table:public.t"},
		{"EXPLAIN ANALYZE DELETE FROM t", "delete:table:public.t"},
		{"DO $$ BEGIN DELETE FROM t; END $$", "execute_dynamic:target:"},
		{"SELECT pg_read_file('/etc/passwd')", "read_server_file:function:pg_read_file"},
		{"SELECT set_config('role', 'admin', false)", "set_role:function:set_config"},
		{"SELECT 1; DROP TABLE t", "drop:table:public.t"},
		{"CALL p(1)", "call:function:p"},
		{"ALTER SYSTEM SET fsync = off", "alter_system:target:"},
		{"CHECKPOINT", "alter_system:target:"},
		{"CREATE EXTENSION dblink", "alter_system:target:"},
		{"CREATE TYPE pair AS (a int, b text)", "create:target:"},
		{"LISTEN jobs", "set:target:"},
		{"NOTIFY jobs, 'x'", "call:function:pg_notify"},
	} {
		a := AnalyzePostgres(tc.sql, nil)
		if a.Err != nil {
			t.Errorf("%q: %v", tc.sql, a.Err)
			continue
		}
		if got := reqs(a); got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.sql, got, tc.want)
		}
	}
}

func TestAnalyzePostgresRefusesWhatItCannotRead(t *testing.T) {
	for _, sql := range []string{"SELEC 1", "DROP TABLE", "SELECT 'unterminated"} {
		if a := AnalyzePostgres(sql, nil); a.Err == nil {
			t.Errorf("%q analyzed: %s", sql, reqs(a))
		}
	}
}

// JOIN … USING merges the named columns, as PostgreSQL does: an
// unqualified reference is not ambiguous, * puts the merged column first
// and once, and the merged column derives from both sides.
func TestJoinUsingMerges(t *testing.T) {
	cat := demoCatalog()
	for sql, want := range map[string]string{
		"SELECT * FROM customers JOIN orders USING (id)":                          "id name email ssn customer_id total_cents",
		"SELECT id, name FROM customers c LEFT JOIN orders o USING (id)":          "id name",
		"SELECT j.* FROM (customers JOIN orders USING (id)) AS j":                 "id name email ssn customer_id total_cents",
		"SELECT c.id, o.id FROM customers c JOIN orders o USING (id)":             "id id",
		"SELECT * FROM customers JOIN orders USING (id) JOIN contacts USING (id)": "id name email ssn customer_id total_cents contact",
		"SELECT * FROM customers NATURAL JOIN orders":                             "id name email ssn customer_id total_cents",
		"SELECT * FROM contacts NATURAL JOIN contacts_2024":                       "id contact",
	} {
		a := AnalyzePostgres(sql, cat)
		if a.Err != nil {
			t.Errorf("%s: %v", sql, a.Err)
			continue
		}
		if got := outputNamesOf(a.Statements[0]); got != want {
			t.Errorf("%s: columns %q, want %q", sql, got, want)
		}
	}
	a := AnalyzePostgres("SELECT id FROM customers JOIN orders USING (id)", cat)
	if src := a.Statements[0].Outputs[0].Sources; len(src) != 2 {
		t.Errorf("merged id derives from %v, want both sides", src)
	}
	if a := AnalyzePostgres("SELECT email FROM customers JOIN contacts USING (id)", cat); a.Err != nil {
		t.Errorf("a column of one side: %v", a.Err)
	}
}
