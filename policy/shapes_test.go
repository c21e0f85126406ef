package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// Whatever the cache answers is what libpg_query's normalizer answers, for
// statements whose shapes repeat with other literals, and for awkward SQL.
func TestShapesMatchLibpgQuery(t *testing.T) {
	templates := []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = %d;",
		"SELECT * FROM t WHERE a IN (%d, %d, %d) AND b = '%s' LIMIT %d",
		"UPDATE t SET a = %d.5 WHERE id = $1 AND note = '%s'",
		"INSERT INTO t (a, b) VALUES (%d, '%s'), (%d, '%s')",
		"SELECT * FROM t ORDER BY %d",
		"SELECT x::varchar(%d) FROM t WHERE y > -%d",
		"SELECT '%s'::date + interval '%d days'",
		"SELECT t1.a, t2.b FROM t1 JOIN t2 ON t1.id = t2.id WHERE t1.c = %d",
		"SET statement_timeout = %d",
		"SELECT $2, %d, $1",
		"SELECT E'%s\\n', %d",
		"SELECT %de3, '%s'",
		"SELECT 1 -- %d '%s'\n, %d",
		"SELECT \"col%d\" FROM t WHERE a = '%s'",
		"SELECT $$%s$$, %d",
		"SELECT '%s'\n'%s', %d",
		"SELECT 'it''s %s', %d",
		"SELECT count(*) FROM orders WHERE total_cents > %d",
	}
	r := rand.New(rand.NewPCG(3, 4))
	words := []string{"x", "hello world", "o''k", "日本", "a%b", "", "12"}
	var s Shapes
	cached := 0
	for i := range 3000 {
		tpl := templates[i%len(templates)]
		var args []any
		for range strings.Count(tpl, "%") {
			args = append(args, nil)
		}
		// Fill %d and %s in order.
		var b strings.Builder
		for j := 0; j < len(tpl); j++ {
			if tpl[j] == '%' && j+1 < len(tpl) {
				switch tpl[j+1] {
				case 'd':
					fmt.Fprint(&b, r.IntN(100000))
					j++
					continue
				case 's':
					b.WriteString(words[r.IntN(len(words))])
					j++
					continue
				}
			}
			b.WriteByte(tpl[j])
		}
		sql := b.String()
		mask, ok := literalMask(sql)
		if ok && s.agreed[mask] {
			cached++
		}
		if got, want := s.Normalize("postgres", sql), Normalize("postgres", sql); got != want {
			t.Fatalf("%q: cache %q, libpg_query %q", sql, got, want)
		}
	}
	if cached < 1000 {
		t.Fatalf("only %d of 3000 statements normalized from the cache", cached)
	}
	t.Logf("%d of 3000 normalized from the cache", cached)
}

func TestShapesCachePgbench(t *testing.T) {
	var s Shapes
	s.Normalize("postgres", "SELECT abalance FROM pgbench_accounts WHERE aid = 5;")
	mask, ok := literalMask("SELECT abalance FROM pgbench_accounts WHERE aid = 77;")
	if !ok || mask != "SELECT abalance FROM pgbench_accounts WHERE aid = $1;" || !s.agreed[mask] {
		t.Fatalf("pgbench's statement is not cached: %q %v %v", mask, ok, s.agreed)
	}
}

// A statement seen after another gets what libpg_query gives it.
func FuzzShapes(f *testing.F) {
	f.Add("SELECT 1", "SELECT 2")
	f.Add("SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = 'y''z'")
	f.Add("SELECT $1, 5", "SELECT $1, 6")
	f.Fuzz(func(t *testing.T, a, b string) {
		var s Shapes
		s.Normalize("postgres", a)
		if got, want := s.Normalize("postgres", b), Normalize("postgres", b); got != want {
			t.Fatalf("after %q: %q → %q, libpg_query %q", a, b, got, want)
		}
	})
}
