package policy

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
)

func TestShapeKeyMasksLiteralsAsPostgreSQLScansThem(t *testing.T) {
	for _, tc := range []struct {
		sql, key string
		ok       bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 4711;", "SELECT abalance FROM pgbench_accounts WHERE aid = \x00n;", true},
		{"select 'it''s', E'a\\'b', $$x$$, $q$y$q$, 1.5e3, .5, B'101', X'ff'", "select \x00s, \x00e, \x00d, \x00d, \x00n, \x00n, \x00b, \x00x", true},
		{"SELECT \"we'ird\" FROM t WHERE a = $1 -- it's\n", "SELECT \"we'ird\" FROM t WHERE a = $1 -- it's\n", true},
		{"SELECT /* a /* nested 'x' */ */ 1", "SELECT /* a /* nested 'x' */ */ \x00n", true},
		{"SELECT a$b, t1.c FROM t1", "SELECT a$b, t1.c FROM t1", true},
		{"SELECT date '2024-01-01', interval '1 day'", "SELECT date \x00s, interval \x00s", true},
		{"SELECT 'a'\n'b'", "", false},           // continuation: one token
		{"SELECT 'a' -- c\n'b'", "", false},      // comments may stand in it
		{"SELECT 'a'\n\v'b'", "", false},         // \v is whitespace to PostgreSQL 16+
		{"SELECT ..5", "SELECT ..\x00n", true},   // "..", then 5
		{"SELECT U&'\\0041'", "", false},         // Unicode escapes
		{"SELECT 123abc", "", false},             // PostgreSQL 15 reads 123 AS abc
		{"SELECT 0x1F", "", false},               // not a number before PostgreSQL 16
		{"SELECT 1..2", "", false},               //
		{"SELECT 'unterminated", "", false},      //
		{"SELECT $tag$ never closed", "", false}, //
		{"SELECT 1 /* open", "", false},          //
		{"SELECT 'a\x00b'", "", false},           // NUL
	} {
		key, spans, ok := pgShapeKey(tc.sql)
		if ok != tc.ok || (ok && key != tc.key) {
			t.Errorf("%q: key %q ok %v, want %q %v", tc.sql, key, ok, tc.key, tc.ok)
			continue
		}
		if ok && !sameLiterals(tc.sql, spans) {
			t.Errorf("%q: spans %v differ from PostgreSQL's scanner", tc.sql, spans)
		}
	}
}

func TestShapeReuseOnlyWhereLiteralsAreValues(t *testing.T) {
	for sql, safe := range map[string]bool{
		"SELECT total_cents FROM orders WHERE id = 4711":                           true,
		"SELECT name FROM customers WHERE id IN (1, 2) AND name LIKE 'a%' LIMIT 5": true,
		"INSERT INTO log (id, note) VALUES (1, 'x')":                               true,
		"UPDATE orders SET total_cents = 5 WHERE id = 3":                           true,
		"SELECT name, email FROM customers ORDER BY 2":                             false, // a position
		"SELECT count(*) FROM customers GROUP BY 1":                                false,
		"SELECT 'customers'::regclass":                                             false,
		"SELECT '{customers}'::_regclass":                                          false,
		"SELECT id FROM orders WHERE '{x}'::text[] = ARRAY['a']":                   true,
		"SELECT set_config('search_path', 'x', false)":                             false,
		"SELECT json_build_object('email', name) FROM customers":                   false,
		"SELECT * FROM generate_series(1, 10)":                                     false,
		"SELECT 'x'::varchar(10)":                                                  false,
		"SET statement_timeout = 5":                                                false,
	} {
		a := analyst(t, demo)
		_, spans, ok := pgShapeKey(sql)
		if !ok {
			t.Fatalf("%s: no shape", sql)
		}
		if got := shapeSafe(sql, spans, a.analyze(sql)); got != safe {
			t.Errorf("%s: shape-safe %v, want %v", sql, got, safe)
		}
	}
}

// randomLiteral is a literal of the same kind as the one it replaces, with
// values an attacker would try: quotes, backslashes, names of tables and
// settings, SQL.
func randomLiteral(r *rand.Rand, kind byte) string {
	words := []string{"customers", "email", "ssn", "pg_authid", "search_path", "'; DROP TABLE customers; --", `\`, `\'`,
		"$$", "/*", "--", "é", "1", "0", "-1", "2024-01-01", "a%", "public.customers", "jane@example.com", ""}
	switch kind {
	case 'n':
		switch r.IntN(3) {
		case 0:
			return fmt.Sprint(r.IntN(1000))
		case 1:
			return fmt.Sprintf("%d.%d", r.IntN(100), r.IntN(100))
		}
		return fmt.Sprintf("%de%d", r.IntN(9)+1, r.IntN(5))
	case 'e':
		w := words[r.IntN(len(words))]
		return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(w) + "'"
	case 'd':
		w := words[r.IntN(len(words))]
		if strings.Contains(w, "$") {
			w = "x"
		}
		return "$$" + w + "$$"
	case 'b':
		return fmt.Sprintf("B'%b'", r.IntN(64))
	case 'x':
		return fmt.Sprintf("X'%x'", r.IntN(256))
	}
	w := words[r.IntN(len(words))]
	return "'" + strings.ReplaceAll(w, "'", "''") + "'"
}

// variant is sql with each literal replaced by a random one of its kind.
func variant(r *rand.Rand, sql string) (string, bool) {
	key, spans, ok := pgShapeKey(sql)
	if !ok || len(spans) == 0 {
		return "", false
	}
	var b strings.Builder
	parts := strings.Split(key, literalMark)
	b.WriteString(parts[0])
	for _, p := range parts[1:] {
		b.WriteString(randomLiteral(r, p[0]))
		b.WriteString(p[1:])
	}
	return b.String(), true
}

// The differential test: decisions by shape equal full decisions on the
// corpus's statements and on generated variants of their literals.
func TestShapeDecisionsEqualFullDecisions(t *testing.T) {
	cf, set, err := LoadCases("testdata/corpus/postgres.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	for name, rels := range cf.Catalog {
		e.SetCatalog(name, staticSource{NewStaticCatalog(1, rels)})
	}
	target := session.Target{Name: "demo", Protocol: "postgres", Database: "sluice_demo"}
	templates := []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 1",
		"SELECT name, email FROM customers WHERE id = 1 AND name <> 'x' LIMIT 10",
		"SELECT name FROM customers WHERE email = 'a@b.c'",
		"SELECT id FROM customers WHERE ssn LIKE '1%'",
		"SELECT name, email FROM customers ORDER BY 1",
		"SELECT name, email FROM customers ORDER BY 2",
		"SELECT count(*) FROM customers GROUP BY 1",
		"SELECT 'customers'::regclass",
		"SELECT pg_relation_size('customers')",
		"SELECT set_config('search_path', 'audit', false)",
		"DELETE FROM notes WHERE id = 1",
		"DELETE FROM notes WHERE 1 = 1",
		"UPDATE notes SET body = 'x' WHERE id = 2",
		"INSERT INTO notes (id, body) VALUES (1, 'x') RETURNING id",
		"SELECT * FROM customers WHERE id = 1 UNION ALL SELECT id, body, 'x', 'y' FROM notes WHERE id = 2",
		"SELECT json_build_object('k', name) FROM customers WHERE id = 3",
		"SELECT * FROM audit.notes WHERE id = 1",
		"SELECT E'\\x41', $$x$$ FROM customers",
	}
	var sqls []string
	for _, c := range cf.Cases {
		sqls = append(sqls, c.SQL)
	}
	sqls = append(sqls, templates...)
	r := rand.New(rand.NewPCG(1, 2))
	total, cached := 0, 0
	for i, who := range []string{"analyst", "migrator"} {
		p := cf.Principals[who]
		id := session.Identity{Subject: p.Sub, Groups: p.Groups}
		byShape := e.Session(id, target)
		full := e.Session(id, target)
		for total < 50000*(i+1) {
			for _, sql := range sqls {
				v, ok := variant(r, sql)
				if !ok {
					continue
				}
				got := byShape.AuthorizeSQL(v)
				want := full.authorizeSQL(v)
				total++
				if !sameDecision(got, want) {
					t.Fatalf("%s as %s: by shape %+v\nfull %+v", v, who, got, want)
				}
			}
		}
		for _, m := range byShape.shapes {
			if m.safe {
				cached++
			}
		}
	}
	if total < 100000 {
		t.Fatalf("only %d statements compared", total)
	}
	if cached == 0 {
		t.Fatal("no shape was reused: the test compares nothing")
	}
	t.Logf("%d statements, %d shapes proven safe", total, cached)
}

func sameDecision(a, b Decision) bool {
	return a.Outcome == b.Outcome && a.Reason == b.Reason && reflect.DeepEqual(a.Policies, b.Policies) &&
		reflect.DeepEqual(a.Masked, b.Masked) && reflect.DeepEqual(a.Kinds, b.Kinds) && reflect.DeepEqual(a.Tables, b.Tables) &&
		reflect.DeepEqual(a.Widths, b.Widths) && reflect.DeepEqual(a.Effects, b.Effects)
}

// Random text from the pieces that decide where literals end: wherever the
// lexer claims to follow the text, its literals are PostgreSQL's scanner's.
func TestShapeLexerAgreesWithTheScanner(t *testing.T) {
	pieces := []string{"'", "''", "E'", "e'", "B'", "X'", "N'", `\`, `\'`, "$", "$$", "$a$", "$1", "1", "1.5", ".5", "1e5", "e",
		"--", "/*", "*/", "\n", " ", "\"", "a", "x", "_", "&", "U&", "select ", "::", "-", "+", ",", "(", ")", "é",
		".", "..", "\v", "\r", "\f", "0x", "--c\n"}
	r := rand.New(rand.NewPCG(7, 4))
	followed := 0
	for range 300000 {
		var b strings.Builder
		for range 1 + r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		sql := b.String()
		_, spans, ok := pgShapeKey(sql)
		if !ok {
			continue
		}
		followed++
		if _, err := pg.Scan(sql); err != nil {
			continue // the server refuses it: no decision to reuse
		}
		if !sameLiterals(sql, spans) {
			res, _ := pg.Scan(sql)
			t.Fatalf("%q: lexer spans %v, scanner %v", sql, spans, res.Tokens)
		}
	}
	t.Logf("%d random texts followed", followed)
}

// shapeThenFull decides a, then b, by shape in one session, and b afresh in
// another: b's decision must not be a's when they differ.
func shapeThenFull(t *testing.T, newSession func() *Authorizer, a, b string) (byShape, full Decision) {
	t.Helper()
	ka, _, _ := pgShapeKey(a)
	if kb, _, _ := pgShapeKey(b); ka != kb {
		t.Fatalf("%q and %q have different shapes", a, b)
	}
	full = newSession().authorizeSQL(b)
	if sameDecision(full, newSession().authorizeSQL(a)) {
		t.Fatalf("%s decides as %s: the test shows nothing", b, a)
	}
	s := newSession()
	s.AuthorizeSQL(a)
	return s.AuthorizeSQL(b), full
}

// A literal the grammar consumes leaves no constant in the tree: FLOAT(p)
// is float4 for p ≤ 24 and float8 above, which names the column, and a
// name decides which column a reference resolves to. Here the inner
// float8 is the outer total_cents for p = 10, but customers.ssn for
// p = 50: by the shape of the first, the second would read ssn unmasked.
func TestShapeLiteralConsumedByTheGrammarIsNoValue(t *testing.T) {
	const q = "SELECT (SELECT float8 FROM (SELECT (ssn || '')::float(%d) FROM customers) c LIMIT 1) FROM (SELECT total_cents AS float8 FROM orders) o"
	newSession := func() *Authorizer { return analyst(t, demo) }
	for _, tc := range []struct{ a, b string }{
		{fmt.Sprintf(q, 10), fmt.Sprintf(q, 50)},
		// NATURAL JOIN on the name: the second joins on masked ssn.
		{"SELECT a.id FROM (SELECT id, total_cents AS float8 FROM orders) a NATURAL JOIN (SELECT (ssn || '')::float(10) FROM customers) b",
			"SELECT a.id FROM (SELECT id, total_cents AS float8 FROM orders) a NATURAL JOIN (SELECT (ssn || '')::float(50) FROM customers) b"},
	} {
		if got, full := shapeThenFull(t, newSession, tc.a, tc.b); !sameDecision(got, full) {
			t.Errorf("%s\nafter %s: by shape %+v\nfull %+v", tc.b, tc.a, got, full)
		}
	}
	for sql, safe := range map[string]bool{
		"SELECT total_cents::float(10) FROM orders":         false,
		"SELECT total_cents::int[3] FROM orders":            false,
		"SELECT CURRENT_TIMESTAMP(3), id FROM orders":       false,
		"SELECT id FROM orders WHERE total_cents = -1":      true, // the constant is at the sign
		"SELECT id FROM orders WHERE total_cents = - - 1.5": true,
	} {
		a := analyst(t, demo)
		_, spans, _ := pgShapeKey(sql)
		if got := shapeSafe(sql, spans, a.analyze(sql)); got != safe {
			t.Errorf("%s: shape-safe %v, want %v", sql, got, safe)
		}
	}
}

// A policy may read the statement's text without naming it: by comparing
// the statement record with a record, or by looking it up in a set of
// vetted statements (here in entity data).
func TestShapeNotWithPoliciesComparingTheStatement(t *testing.T) {
	const vetted = "SELECT total_cents FROM orders WHERE id = 1"
	schema, err := os.ReadFile("../cedar/defaults/sluice.cedarschema")
	if err != nil {
		t.Fatal(err)
	}
	for name, files := range map[string]fstest.MapFS{
		"record": {"p.cedar": {Data: []byte(`
@id("read") permit (principal, action in [Sluice::Action::"select", Sluice::Action::"read_unmasked"], resource);
@id("vetted-only") forbid (principal, action in [Sluice::Action::"select", Sluice::Action::"read_unmasked"], resource)
  unless { context.statement == {"kind": "select", "text": "` + vetted + `"} };`)}},
		"set in entities": {
			"p.cedar": {Data: []byte(`
@id("read") permit (principal, action in [Sluice::Action::"select", Sluice::Action::"read_unmasked"], resource);
@id("vetted-only") forbid (principal, action in [Sluice::Action::"select", Sluice::Action::"read_unmasked"], resource)
  unless { Sluice::Group::"analysts".vetted.contains(context.statement) };`)},
			"entities.json":      {Data: []byte(`[{"uid": {"type": "Sluice::Group", "id": "analysts"}, "parents": [], "attrs": {"vetted": [{"kind": "select", "text": "` + vetted + `"}]}}]`)},
			"sluice.cedarschema": {Data: bytes.Replace(schema, []byte("entity Group in [Group];"), []byte(`entity Group in [Group] = {"vetted": Set<Statement>};`), 1)},
		},
	} {
		set, err := cedar.Load(files)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		e := NewEngine(set)
		e.SetCatalog(demo.Name, fixedCatalog{demoCatalog()})
		newSession := func() *Authorizer {
			return e.Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, demo)
		}
		if d := newSession().authorizeSQL(vetted); !d.Allowed() {
			t.Fatalf("%s: the vetted statement is refused: %+v", name, d)
		}
		if got, full := shapeThenFull(t, newSession, vetted, "SELECT total_cents FROM orders WHERE id = 2"); !sameDecision(got, full) {
			t.Errorf("%s: by shape %+v\nfull %+v", name, got, full)
		}
	}
}

// Which policies read the text: the statement's kind and has tests do not.
func TestShapeStatementTextReaders(t *testing.T) {
	for cond, reads := range map[string]bool{
		`context.statement.kind == "select" && context.bounded`:                                false,
		`context has statement && context.statement has kind`:                                  false,
		`context["statement"]["kind"] like "sel*"`:                                             false,
		`context.statement.text like "*pg_sleep*"`:                                             true,
		`context["statement"]["text"] == ""`:                                                   true,
		`context.statement == {"kind": "select", "text": "SELECT 1"}`:                          true,
		`[{"kind": "select", "text": "SELECT 1"}].contains(context.statement)`:                 true,
		`(if context.bounded then context.statement else {"kind": "", "text": ""}).kind == ""`: true,
		`context.target == "context"`:                                                          false,
	} {
		set, err := cedar.Load(fstest.MapFS{"p.cedar": {Data: []byte(
			`@id("context-free") permit (principal, action == Sluice::Action::"select", resource) when { ` + cond + ` };`)}})
		if err != nil {
			t.Fatalf("%s: %v", cond, err)
		}
		if set.UsesStatementText != reads {
			t.Errorf("%s: reads the text %v, want %v", cond, set.UsesStatementText, reads)
		}
	}
	if set, err := cedar.Default(); err != nil || set.UsesStatementText {
		t.Fatalf("the default policies read the text (%v): no decisions by shape", err)
	}
}
