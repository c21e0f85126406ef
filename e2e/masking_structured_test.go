package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicedb/sluice/devstack"
)

// maskedKeys are the demo's protected customer columns and the masked
// forms of customer 1's values.
var maskedKeys = map[string]string{"email": `"c***@example.com"`, "ssn": `"*******6789"`}

// jsonObjects decodes a JSON object, or an array of them, into per-key raw
// values.
func jsonObjects(t *testing.T, what string, v []byte) []map[string]json.RawMessage {
	t.Helper()
	if !json.Valid(v) {
		t.Fatalf("%s: invalid JSON: %s", what, v)
	}
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(v, &objs); err != nil {
		var one map[string]json.RawMessage
		if err := json.Unmarshal(v, &one); err != nil {
			t.Fatalf("%s: not a JSON object: %s", what, v)
		}
		objs = []map[string]json.RawMessage{one}
	}
	return objs
}

// sameButMasked checks a masked JSON value against the direct one: every
// key is there, unmasked keys byte-equal, masked keys masked.
func sameButMasked(t *testing.T, what string, got, direct []byte) {
	t.Helper()
	g, d := jsonObjects(t, what, got), jsonObjects(t, what+" (direct)", direct)
	if len(g) != len(d) {
		t.Fatalf("%s: %d objects, direct %d", what, len(g), len(d))
	}
	for i := range d {
		if len(g[i]) != len(d[i]) {
			t.Errorf("%s: keys %v, direct %v", what, g[i], d[i])
		}
		for k, dv := range d[i] {
			gv := g[i][k]
			want, masked := maskedKeys[k]
			switch {
			case !masked && string(gv) != string(dv):
				t.Errorf("%s: unmasked key %q is %s, direct %s", what, k, gv, dv)
			case masked && string(gv) == string(dv):
				t.Errorf("%s: masked key %q came back unmasked: %s", what, k, gv)
			case masked && i == 0 && string(gv) != want:
				t.Errorf("%s: masked key %q is %s, want %s", what, k, gv, want)
			}
		}
	}
}

// psqlValue runs q in psql and returns its value as psql prints it
// (unaligned, no header).
func psqlValue(t *testing.T, q string) (string, error) {
	t.Helper()
	out, err := psql(t, stack.AgentURL(""), `\pset format unaligned`, `\pset tuples_only on`, q)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "Output format is") && !strings.HasPrefix(l, "Tuples only is") {
			lines = append(lines, l)
		}
	}
	return strings.TrimSpace(strings.Join(lines, "\n")), err
}

var jsonQueries = []string{
	"SELECT row_to_json(c) FROM customers c WHERE id = 1",
	"SELECT to_jsonb(c.*) FROM customers c WHERE id = 1",
	"SELECT to_json(c) FROM customers c WHERE id = 1",
	"SELECT json_agg(c ORDER BY id) FROM customers c WHERE id <= 3",
	"SELECT jsonb_agg(c) FROM (SELECT * FROM customers WHERE id <= 3 ORDER BY id) c",
	"SELECT json_build_object('id', id, 'name', name, 'email', email, 'ssn', ssn) FROM customers WHERE id = 1",
	"SELECT jsonb_build_object('email', email, 'name', name) FROM customers WHERE id = 1",
	"SELECT j FROM (SELECT row_to_json(c) AS j FROM customers c WHERE id = 1) s",
	"SELECT row_to_json(c)::text FROM customers c WHERE id = 1",
}

// directValue runs q straight against PostgreSQL and returns its first
// value as text.
func directValue(t *testing.T, q string) []byte {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, stack.PG.URL(devstack.AgentDBUser, devstack.AgentDBPass, devstack.DemoDatabase))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v string
	if err := c.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
		t.Fatalf("direct %s: %v", q, err)
	}
	return []byte(v)
}

func TestMaskingJSONFromRowsPsqlAndPgx(t *testing.T) {
	ctx := context.Background()
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement}
	conns := map[pgx.QueryExecMode]*pgx.Conn{}
	for _, m := range modes {
		conns[m] = pgxConnect(t, m)
		defer conns[m].Close(ctx)
	}
	for _, q := range jsonQueries {
		direct := directValue(t, q)
		out, err := psqlValue(t, q)
		if err != nil {
			t.Fatalf("psql %s: %v\n%s", q, err, out)
		}
		noPII(t, q, out)
		sameButMasked(t, "psql "+q, []byte(out), direct)
		for _, m := range modes {
			rows, err := conns[m].Query(ctx, q)
			if err != nil {
				t.Fatalf("%v %s: %v", m, q, err)
			}
			if !rows.Next() {
				t.Fatalf("%v %s: no row: %v", m, q, rows.Err())
			}
			fd := rows.FieldDescriptions()[0]
			raw := append([]byte(nil), rows.RawValues()[0]...)
			if fd.Format == 1 && fd.DataTypeOID == pgtype.JSONBOID {
				if raw[0] != 1 {
					t.Fatalf("%v %s: jsonb binary version %d", m, q, raw[0])
				}
				raw = raw[1:]
			}
			rows.Close()
			noPII(t, m.String()+" "+q, string(raw))
			sameButMasked(t, m.String()+" "+q, raw, direct)
			// pgx decodes it as JSON too.
			var decoded any
			if err := conns[m].QueryRow(ctx, q).Scan(&decoded); err != nil {
				t.Errorf("%v %s: pgx cannot decode the masked value: %v", m, q, err)
			}
		}
	}
}

func TestMaskingJSONWholeWhenPartsUnknown(t *testing.T) {
	// A key computed from data, an aggregate ordered by a masked column:
	// the value is masked as a whole and stays valid JSON.
	for _, q := range []string{
		"SELECT json_build_object(name, email) FROM customers WHERE id = 1",
		"SELECT json_object_agg(email, name) FROM customers WHERE id <= 2",
		"SELECT jsonb_set(to_jsonb(c), '{x}', '1') FROM customers c WHERE id = 1",
	} {
		out, err := psqlValue(t, q)
		if err != nil {
			t.Fatalf("%s: %v\n%s", q, err, out)
		}
		noPII(t, q, out)
		if v := strings.TrimSpace(out); !json.Valid([]byte(v)) {
			t.Errorf("%s: invalid JSON %q", q, v)
		}
	}
}

func TestMaskingCompositeAndArrays(t *testing.T) {
	ctx := context.Background()
	// Text: psql shows composites and arrays as the server prints them.
	for q, want := range map[string]string{
		"SELECT c FROM customers c WHERE id = 1":                            `(1,"Customer 1","c***@example.com","*******6789")`,
		"SELECT ROW(id, name, email) FROM customers WHERE id = 1":           `(1,"Customer 1","c***@example.com")`,
		"SELECT ARRAY[name, email, ssn] FROM customers WHERE id = 1":        `{"Customer 1","c***@example.com","*******6789"}`,
		"SELECT array_agg(email ORDER BY id) FROM customers WHERE id <= 2":  `{"c***@example.com","c***@example.com"}`,
		"SELECT ARRAY(SELECT ssn FROM customers WHERE id <= 2 ORDER BY id)": `{"*******6789","*******6789"}`,
	} {
		out, err := psqlValue(t, q)
		if err != nil {
			t.Fatalf("%s: %v\n%s", q, err, out)
		}
		noPII(t, q, out)
		if got := strings.TrimSpace(out); got != want {
			t.Errorf("psql %s:\n got %s\nwant %s", q, got, want)
		}
	}
	// Binary and text through pgx: the values decode to their types.
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		c := pgxConnect(t, m)
		var arr []string
		if err := c.QueryRow(ctx, "SELECT ARRAY[name, email, ssn] FROM customers WHERE id = 1").Scan(&arr); err != nil {
			t.Fatalf("%v array: %v", m, err)
		}
		if strings.Join(arr, "|") != "Customer 1|c***@example.com|*******6789" {
			t.Errorf("%v array: %q", m, arr)
		}
		if err := c.QueryRow(ctx, "SELECT array_agg(email ORDER BY id) FROM customers WHERE id <= 2").Scan(&arr); err != nil {
			t.Fatalf("%v array_agg: %v", m, err)
		}
		if strings.Join(arr, "|") != "c***@example.com|c***@example.com" {
			t.Errorf("%v array_agg: %q", m, arr)
		}
		if m == pgx.QueryExecModeCacheStatement {
			// An anonymous record decodes in binary only.
			var id int32
			var name, email, ssn string
			if err := c.QueryRow(ctx, "SELECT ROW(id, name, email, ssn) FROM customers WHERE id = 1").Scan(pgtype.CompositeFields{&id, &name, &email, &ssn}); err != nil {
				t.Fatalf("record: %v", err)
			}
			if id != 1 || name != "Customer 1" || email != "c***@example.com" || ssn != "*******6789" {
				t.Errorf("binary record: %d %q %q %q", id, name, email, ssn)
			}
		}
		c.Close(ctx)
	}
}

// typedTable is a table of non-text columns with typed masks from column
// comments, and a secret ssn beside a plain one.
const typedTable = `
	DROP TABLE IF EXISTS typed_people;
	CREATE TABLE typed_people (id int, born date, salary numeric(10,2), ext_id uuid, seen timestamptz,
	  ssn text, secret_ssn text, score int);
	ALTER TABLE typed_people OWNER TO agent;
	COMMENT ON COLUMN typed_people.born IS 'sluice:pii=dob sluice:mask=bucket';
	COMMENT ON COLUMN typed_people.salary IS 'sluice:pii=salary sluice:mask=zero';
	COMMENT ON COLUMN typed_people.ext_id IS 'sluice:pii=id sluice:mask=token';
	COMMENT ON COLUMN typed_people.seen IS 'sluice:pii=activity';
	COMMENT ON COLUMN typed_people.ssn IS 'sluice:pii=ssn sluice:mask_typed=zero';
	COMMENT ON COLUMN typed_people.secret_ssn IS 'sluice:pii=ssn sluice:secret';
	COMMENT ON COLUMN typed_people.score IS 'sluice:pii=score sluice:mask_typed=bucket';
	INSERT INTO typed_people VALUES
	  (1, '1987-06-05', 12345.67, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-05-06 07:08:09+00', '123-45-6789', '987-65-4321', 4321);`

func TestMaskingTypedValuesPgxTextAndBinary(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, typedTable); err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		c := pgxConnect(t, m)
		rows, err := c.Query(ctx, "SELECT born, salary, ext_id, seen, ssn, secret_ssn, score, length(ssn) FROM typed_people WHERE id = 1")
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if !rows.Next() {
			t.Fatalf("%v: no row: %v", m, rows.Err())
		}
		binary := rows.FieldDescriptions()[0].Format == 1
		var born time.Time
		var salary pgtype.Numeric
		var ext pgtype.UUID
		var seen *time.Time
		var ssn, secret string
		var score *int32
		var length *int32
		if err := rows.Scan(&born, &salary, &ext, &seen, &ssn, &secret, &score, &length); err != nil {
			t.Fatalf("%v: the masked values do not decode to their types: %v", m, err)
		}
		rows.Close()
		c.Close(ctx)
		if m == pgx.QueryExecModeCacheStatement && !binary {
			t.Errorf("%v: expected binary results", m)
		}
		if !born.Equal(time.Date(1987, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%v: born (mask=bucket) = %v, want 1987-01-01", m, born)
		}
		if f, _ := salary.Float64Value(); !salary.Valid || f.Float64 != 0 {
			t.Errorf("%v: salary (mask=zero) = %+v, want 0", m, salary)
		}
		u := ext.String()
		if !ext.Valid || u == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" || u[14] != '8' {
			t.Errorf("%v: ext_id (mask=token) = %s, want a version 8 token UUID", m, u)
		}
		tokens = append(tokens, u)
		if seen != nil {
			t.Errorf("%v: seen (no typed mask) = %v, want NULL", m, *seen)
		}
		if ssn != "*******6789" {
			t.Errorf("%v: ssn tagged pii=ssn = %q, want its last four", m, ssn)
		}
		if secret != "[redacted]" {
			t.Errorf("%v: ssn tagged pii=ssn and secret = %q, want [redacted]", m, secret)
		}
		if score == nil || *score != 4000 {
			t.Errorf("%v: score (mask_typed=bucket) = %v, want 4000", m, score)
		}
		if length == nil || *length != 0 {
			t.Errorf("%v: length(ssn) (mask_typed=zero) = %v, want 0", m, length)
		}
	}
	if tokens[0] != tokens[1] {
		t.Errorf("token UUIDs differ between formats: %v", tokens)
	}
	// psql, text: the strictest tag wins.
	out, err := psql(t, stack.AgentURL(""), "SELECT ssn, secret_ssn, born FROM typed_people")
	if err != nil || !strings.Contains(out, "*******6789") || !strings.Contains(out, "[redacted]") || strings.Contains(out, "4321") || !strings.Contains(out, "1987-01-01") {
		t.Errorf("psql typed and tag combinations: %v\n%s", err, out)
	}
}

func TestMaskingJSONMySQL(t *testing.T) {
	addr := mysqlConnect(t)
	direct, err := stack.Maria.Root(devstack.DemoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	db, err := sql.Open("mysql", stack.MySQLDSN(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"SELECT JSON_OBJECT('id', id, 'name', name, 'email', email) FROM customers WHERE id = 1",
		"SELECT JSON_ARRAYAGG(JSON_OBJECT('id', id, 'email', email, 'name', name)) FROM customers WHERE id <= 3",
		"SELECT JSON_ARRAY(name, email) FROM customers WHERE id = 1",
	} {
		var want, got string
		if err := direct.QueryRow(q).Scan(&want); err != nil {
			t.Fatalf("direct %s: %v", q, err)
		}
		for _, prepared := range []bool{false, true} {
			var err error
			if prepared {
				err = db.QueryRow(q+" AND ? = 1", 1).Scan(&got)
			} else {
				err = db.QueryRow(q).Scan(&got)
			}
			if err != nil {
				t.Fatalf("%s (prepared %v): %v", q, prepared, err)
			}
			noPII(t, q, got)
			if !strings.Contains(q, "JSON_ARRAY(") {
				sameButMasked(t, q, []byte(got), []byte(want))
				continue
			}
			var arr []string
			if err := json.Unmarshal([]byte(got), &arr); err != nil || len(arr) != 2 || arr[0] != "Customer 1" || arr[1] != "c***@example.com" {
				t.Errorf("%s: %s (%v)", q, got, err)
			}
		}
	}
}

func TestMaskingTypedValuesMySQLTextAndBinary(t *testing.T) {
	ctx := context.Background()
	if err := stack.Maria.Exec(ctx, `
	  DROP TABLE IF EXISTS sluice_demo.typed_people;
	  CREATE TABLE sluice_demo.typed_people (id int,
	    born date COMMENT 'sluice:pii=dob sluice:mask=bucket',
	    salary decimal(10,2) COMMENT 'sluice:pii=salary sluice:mask=zero',
	    seen datetime COMMENT 'sluice:pii=activity sluice:mask=bucket',
	    score int COMMENT 'sluice:pii=score sluice:mask_typed=bucket',
	    plain_score int COMMENT 'sluice:pii=score',
	    ssn varchar(20) COMMENT 'sluice:pii=ssn',
	    secret_ssn varchar(20) COMMENT 'sluice:pii=ssn sluice:secret');
	  INSERT INTO sluice_demo.typed_people VALUES (1, '1987-06-05', 12345.67, '2024-05-06 07:08:09', 4321, 4321, '123-45-6789', '987-65-4321');`); err != nil {
		t.Fatal(err)
	}
	cfg, err := gomysql.ParseDSN(stack.MySQLDSN(mysqlConnect(t)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = true
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const q = "SELECT born, salary, seen, score, plain_score, ssn, secret_ssn, JSON_OBJECT('ssn', ssn, 'score', score) FROM typed_people WHERE id = 1"
	for _, prepared := range []bool{false, true} {
		var born, seen time.Time
		var salary, ssn, secret, j string
		var score, plain sql.NullInt64
		var err error
		if prepared { // the binary protocol
			err = db.QueryRowContext(ctx, q+" AND ? = 1", 1).Scan(&born, &salary, &seen, &score, &plain, &ssn, &secret, &j)
		} else {
			err = db.QueryRowContext(ctx, q).Scan(&born, &salary, &seen, &score, &plain, &ssn, &secret, &j)
		}
		if err != nil {
			t.Fatalf("prepared %v: the masked values do not decode to their types: %v", prepared, err)
		}
		if !born.Equal(time.Date(1987, 1, 1, 0, 0, 0, 0, time.UTC)) || !seen.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("prepared %v: born %v seen %v, want year buckets", prepared, born, seen)
		}
		if salary != "0" && salary != "0.00" {
			t.Errorf("prepared %v: salary (mask=zero) = %q", prepared, salary)
		}
		if !score.Valid || score.Int64 != 4000 || plain.Valid {
			t.Errorf("prepared %v: score (mask_typed=bucket) = %v, plain_score (no typed mask) = %v, want 4000 and NULL", prepared, score, plain)
		}
		if ssn != "*******6789" || secret != "[redacted]" {
			t.Errorf("prepared %v: ssn %q (want last four), secret ssn %q (want [redacted])", prepared, ssn, secret)
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(j), &obj); err != nil || obj["ssn"] != "*******6789" || obj["score"] != float64(4000) {
			t.Errorf("prepared %v: JSON %s (%v)", prepared, j, err)
		}
	}
}

func TestMaskingJSONDetectorsInsideStrings(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, `
	  DROP TABLE IF EXISTS events;
	  CREATE TABLE events (id int, payload jsonb, note text);
	  ALTER TABLE events OWNER TO agent;
	  INSERT INTO events VALUES (1, '{"user": "jane.roe@example.org", "cfg": "password=\"hunter2-secret\"}", "n": 3}', 'token: sk_live_abcdefghijklmnop1234');`); err != nil {
		t.Fatal(err)
	}
	tf := tokenFor(t, "detector-json", []string{"analysts"})
	url := stack.AgentURL(connectTo(t, devstack.DemoTarget+"-scrubbed", tf))
	ctx2, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = m
		c, err := pgx.ConnectConfig(ctx2, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"SELECT payload FROM events WHERE id = 1",
			"SELECT payload::json FROM events WHERE id = 1",
			"SELECT json_build_object('p', payload, 'note', note) FROM events WHERE id = 1",
		} {
			var v map[string]any
			if err := c.QueryRow(ctx2, q).Scan(&v); err != nil {
				t.Fatalf("%v %s: the scrubbed JSON does not decode: %v", m, q, err)
			}
			b, _ := json.Marshal(v)
			if s := string(b); strings.Contains(s, "jane.roe") || strings.Contains(s, "hunter2") || strings.Contains(s, "sk_live") || !strings.Contains(s, "[email]") {
				t.Errorf("%v %s: %s", m, q, s)
			}
		}
		c.Close(ctx2)
	}
}
