package policy

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"

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
		cached += len(byShape.shapes)
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
		"--", "/*", "*/", "\n", " ", "\"", "a", "x", "_", "&", "U&", "select ", "::", "-", "+", ",", "(", ")", "é"}
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
