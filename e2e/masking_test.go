package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/devstack"
)

// Real values of the demo's pii columns (customers 1–3).
var realPII = []string{"customer1@example.com", "customer2@example.com", "001-45-6789", "002-45-6789"}

func noPII(t *testing.T, what, out string) {
	t.Helper()
	for _, v := range realPII {
		if strings.Contains(out, v) {
			t.Errorf("%s: real value %q reached the agent:\n%s", what, v, out)
		}
	}
}

// shapes are the query shapes of DESIGN.md §2 over the tagged columns.
var shapes = []struct {
	sql  string
	want []string // masked forms or untouched values that must appear
}{
	{"SELECT id, name, email, ssn FROM customers WHERE id <= 2 ORDER BY id", []string{"Customer 1", "c***@example.com", "*******6789"}},
	{"SELECT * FROM customers WHERE id <= 2 ORDER BY id", []string{"Customer 2", "c***@example.com", "*******6789"}},
	// Derived values keep nothing of the original: partial masks are for
	// the bare column only.
	{"SELECT lower(email) AS e, upper(ssn) AS s FROM customers WHERE id <= 2", []string{"[redacted]"}},
	{"SELECT row_to_json(c) AS j FROM customers c WHERE id <= 2", nil},
	{"SELECT c AS whole FROM customers c WHERE id <= 2", nil},
	{"SELECT string_agg(email, ',') AS all_emails FROM customers WHERE id <= 2", nil},
	{"SELECT max(ssn) AS m, count(*) AS n FROM customers WHERE id <= 2", []string{" 2\n"}},
	{"SELECT x FROM (SELECT email AS x FROM customers WHERE id <= 2) s", []string{"c***@example.com"}},
	{"WITH e AS (SELECT email, name FROM customers WHERE id <= 2) SELECT * FROM e", []string{"c***@example.com", "Customer 1"}},
	{"SELECT name FROM customers WHERE id = 1 UNION ALL SELECT email FROM customers WHERE id = 2", nil},
	{"SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id <= 2", []string{"c***@example.com"}},
	{"SELECT (SELECT ssn FROM customers WHERE id = o.customer_id) AS s FROM orders o WHERE o.customer_id <= 2", []string{"[redacted]"}},
	{"COPY (SELECT id, email FROM customers WHERE id <= 2) TO STDOUT", []string{"c***@example.com"}},
}

func TestMaskingEveryQueryShapeWithPsql(t *testing.T) {
	for _, tc := range shapes {
		out, err := psql(t, stack.AgentURL(""), tc.sql)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.sql, err, out)
		}
		noPII(t, tc.sql, out)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.sql, w, out)
			}
		}
	}
}

func TestMaskingWithPgxTextAndBinary(t *testing.T) {
	ctx := context.Background()
	// Every shape, with the extended protocol (binary results where pgx asks
	// for them) and the simple protocol (text).
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		c := pgxConnect(t, mode)
		for _, tc := range shapes {
			if strings.HasPrefix(tc.sql, "COPY") {
				continue
			}
			rows, err := c.Query(ctx, tc.sql)
			if err != nil {
				t.Fatalf("%v %s: %v", mode, tc.sql, err)
			}
			var out strings.Builder
			binary := false
			for rows.Next() {
				for i, v := range rows.RawValues() {
					if rows.FieldDescriptions()[i].Format == 1 {
						binary = true
					}
					out.Write(v)
					out.WriteByte('|')
				}
				out.WriteByte('\n')
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("%v %s: %v", mode, tc.sql, err)
			}
			noPII(t, mode.String()+" "+tc.sql, out.String())
			for _, w := range tc.want {
				if w != " 2\n" && !strings.Contains(out.String(), w) {
					t.Errorf("%v %s: lacks %q:\n%s", mode, tc.sql, w, out.String())
				}
			}
			if mode == pgx.QueryExecModeCacheStatement && strings.HasPrefix(tc.sql, "SELECT id, name") && !binary {
				t.Errorf("expected binary results in %v", mode)
			}
		}
		c.Close(ctx)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeDescribeExec} {
		c := pgxConnect(t, mode)
		rows, err := c.Query(ctx, "SELECT id, name, email, ssn, length(ssn) FROM customers WHERE id <= $1 ORDER BY id", 2)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id int32
			var name, email, ssn string
			var l *int32
			if err := rows.Scan(&id, &name, &email, &ssn, &l); err != nil {
				t.Fatalf("mode %v: scan: %v", mode, err)
			}
			if l != nil {
				t.Errorf("mode %v: masked int column came back %d, want NULL", mode, *l)
			}
			got = append(got, strings.Join([]string{name, email, ssn}, "|"))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
		out := strings.Join(got, "\n")
		noPII(t, mode.String(), out)
		if !strings.Contains(out, "Customer 1|c***@example.com|*******6789") {
			t.Errorf("mode %v: got\n%s", mode, out)
		}
	}
}

func TestTokensAreDeterministicAndGroup(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, `
	  DROP TABLE IF EXISTS visits;
	  CREATE TABLE visits (id serial PRIMARY KEY, visitor_email text, note text);
	  ALTER TABLE visits OWNER TO agent;
	  INSERT INTO visits (visitor_email, note) VALUES
	    ('ann@example.com', 'a'), ('bob@example.com', 'b'), ('ann@example.com', 'c'), ('ann@example.com', 'd');`); err != nil {
		t.Fatal(err)
	}
	token := func() map[string]string {
		out, err := psql(t, stack.AgentURL(""), "SELECT note, visitor_email FROM visits ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		noPII(t, "visits", out)
		if strings.Contains(out, "ann@example.com") {
			t.Fatalf("token column unmasked:\n%s", out)
		}
		m := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Split(line, "|")
			if len(f) == 2 && strings.Contains(f[1], "tok_") {
				m[strings.TrimSpace(f[0])] = strings.TrimSpace(f[1])
			}
		}
		return m
	}
	first, second := token(), token() // two sessions
	if len(first) != 4 || first["a"] != first["c"] || first["a"] == first["b"] || first["a"] != second["a"] || first["b"] != second["b"] {
		t.Fatalf("tokens: session 1 %v, session 2 %v", first, second)
	}
	out, err := psql(t, stack.AgentURL(""), "SELECT visitor_email, count(*) AS n FROM visits GROUP BY visitor_email ORDER BY n DESC")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, first["a"]) || !strings.Contains(out, "| 3") || !strings.Contains(out, "| 1") {
		t.Fatalf("GROUP BY on the tokenized column:\n%s", out)
	}
}

func TestDetectorsOnAndOff(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, `
	  DROP TABLE IF EXISTS tickets;
	  CREATE TABLE tickets (id int, body text);
	  ALTER TABLE tickets OWNER TO agent;
	  INSERT INTO tickets VALUES (1, 'reach me at jane.roe@example.org, card 4111 1111 1111 1111 exp 12/30');`); err != nil {
		t.Fatal(err)
	}
	tok, _ := stack.MintToken("detector-agent", []string{"analysts"}, time.Hour)
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	off, err := psql(t, stack.AgentURL(""), "SELECT body FROM tickets")
	if err != nil || !strings.Contains(off, "jane.roe@example.org") || !strings.Contains(off, "4111 1111 1111 1111") {
		t.Fatalf("detectors off: %v\n%s", err, off)
	}
	on, err := psql(t, stack.AgentURL(connectTo(t, devstack.DemoTarget+"-scrubbed", tf)), "SELECT body FROM tickets")
	if err != nil || strings.Contains(on, "jane.roe@example.org") || strings.Contains(on, "4111") ||
		!strings.Contains(on, "[email]") || !strings.Contains(on, "[card]") || !strings.Contains(on, "exp 12/30") {
		t.Fatalf("detectors on: %v\n%s", err, on)
	}
	t.Logf("detectors on: %s", strings.TrimSpace(on))
}

func TestTagsFromColumnComments(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, `
	  DROP TABLE IF EXISTS staff;
	  CREATE TABLE staff (id int, name text, phone text);
	  ALTER TABLE staff OWNER TO agent;
	  COMMENT ON COLUMN staff.phone IS 'work phone sluice:pii=phone';
	  INSERT INTO staff VALUES (1, 'Ada', '415-555-0100');`); err != nil {
		t.Fatal(err)
	}
	out, err := psql(t, stack.AgentURL(""), "SELECT name, phone FROM staff")
	if err != nil || strings.Contains(out, "415-555-0100") || !strings.Contains(out, "********0100") || !strings.Contains(out, "Ada") {
		t.Fatalf("phone tagged by its column comment: %v\n%s", err, out)
	}
}

// pgxConnect opens a pgx connection through the demo connector in mode.
func pgxConnect(t *testing.T, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(stack.AgentURL(""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
