package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/policy"
)

// writeOrDDL are the actions whose statements a read-only role must not be
// able to run.
var writeOrDDL = []string{"insert", "update", "delete", "truncate", "create", "alter", "drop"}

// PREPARE writes nothing itself; sluice refuses to prepare what it would
// refuse to run, so its requests are those of the prepared statement.
func classedWrite(a policy.Analysis) bool {
	for _, st := range a.Statements {
		if st.Kind == "prepare" {
			continue
		}
		for _, r := range st.Requests {
			if slices.Contains(writeOrDDL, r.Action) {
				return true
			}
		}
	}
	return false
}

// pgCorpusSchema builds the corpus catalog as real tables, and two roles
// whose privileges match the default policies exactly: an analyst that may
// only read, and a migrator that may read and write but not run DDL.
const pgCorpusSchema = `
CREATE SCHEMA audit;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text, email text, ssn text);
CREATE TABLE public.orders (id serial PRIMARY KEY, customer_id int, total_cents int, placed_at timestamptz DEFAULT now());
CREATE TABLE public.products (id int PRIMARY KEY, name text, price_cents int);
CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
CREATE TABLE audit.notes (id int, body text);
CREATE TABLE audit.events (id int, actor text, payload text);
INSERT INTO customers VALUES (100, 'a', 'a@example.com', '123-45-6789');
INSERT INTO orders VALUES (10, 1, 100), (20, 1, 200);
REVOKE ALL ON DATABASE corpus FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE ROLE corpus_analyst LOGIN PASSWORD 'corpus';
CREATE ROLE corpus_migrator LOGIN PASSWORD 'corpus';
GRANT CONNECT ON DATABASE corpus TO corpus_analyst, corpus_migrator;
GRANT USAGE ON SCHEMA public, audit TO corpus_analyst, corpus_migrator;
GRANT SELECT ON ALL TABLES IN SCHEMA public, audit TO corpus_analyst, corpus_migrator;
GRANT INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public, audit TO corpus_migrator;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO corpus_migrator;
`

// TestDifferentialPostgres runs the PostgreSQL corpus against the real
// database: what sluice allows the database accepts under a role with
// exactly the policy's privileges, and what sluice classes as a write or DDL
// the database refuses to a read-only role.
func TestDifferentialPostgres(t *testing.T) {
	ctx := context.Background()
	_ = stack.PG.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS corpus")
	_ = stack.PG.Exec(ctx, "postgres", "DROP ROLE IF EXISTS corpus_analyst; DROP ROLE IF EXISTS corpus_migrator")
	if err := stack.PG.Exec(ctx, "postgres", "CREATE DATABASE corpus"); err != nil {
		t.Fatal(err)
	}
	if err := stack.PG.Exec(ctx, "corpus", pgCorpusSchema); err != nil {
		t.Fatal(err)
	}
	cf, set, err := policy.LoadCases("../policy/testdata/corpus/postgres.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cat := policy.NewStaticCatalog(1, cf.Catalog["demo"])
	compareWithDatabase(t, "PostgreSQL", cf, set,
		func(sql string) policy.Analysis { return policy.AnalyzePostgres(sql, cat) },
		func(role, sql string, rollback bool) error { return runAs(ctx, role, sql, rollback) })
}

// compareWithDatabase runs every analyst and migrator case against the
// database under roles named corpus_<principal>: what sluice allows must
// run (writes inside a rolled-back transaction), and what it classes as a
// write or DDL must fail for the read-only analyst role.
func compareWithDatabase(t *testing.T, db string, cf *policy.CaseFile, set *cedar.Set,
	analyze func(string) policy.Analysis, run func(role, sql string, rollback bool) error) {
	t.Helper()
	roles := map[string]string{"analyst": "corpus_analyst", "migrator": "corpus_migrator"}
	var allowedOK, writeRefused, disagreements int
	for _, r := range cf.Run(set) {
		role, ok := roles[r.Case.As]
		if !ok || strings.TrimSpace(r.Case.SQL) == "" {
			continue
		}
		if r.Decision.Outcome == policy.Allow {
			if err := run(role, r.Case.SQL, r.Case.As == "migrator"); err != nil {
				disagreements++
				t.Errorf("sluice allows %s %q, %s refuses: %v", r.Case.As, r.Case.SQL, db, err)
			} else {
				allowedOK++
			}
		}
		if a := analyze(r.Case.SQL); r.Case.As == "analyst" && a.Err == nil && classedWrite(a) {
			if err := run(role, r.Case.SQL, true); err == nil {
				disagreements++
				t.Errorf("sluice classes %q as a write or DDL, but %s ran it for a read-only role", r.Case.SQL, db)
			} else {
				writeRefused++
			}
		}
	}
	t.Logf("%s corpus: %d allowed statements accepted by the database, %d write/DDL statements refused to a read-only role, %d disagreements",
		db, allowedOK, writeRefused, disagreements)
}

// runAs runs sql as role in a fresh connection, inside a transaction that is
// rolled back when rollback is set.
func runAs(ctx context.Context, role, sql string, rollback bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, stack.PG.URL(role, "corpus", "corpus"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(ctx)
	if rollback {
		if _, err := c.Exec(ctx, "BEGIN").ReadAll(); err != nil {
			return err
		}
		defer func() { _, _ = c.Exec(ctx, "ROLLBACK").ReadAll() }()
	}
	up := strings.ToUpper(strings.TrimSpace(sql))
	if strings.HasPrefix(up, "COPY") && strings.Contains(up, "TO STDOUT") {
		var sink strings.Builder
		_, err := c.CopyTo(ctx, &sink, sql)
		return err
	}
	if strings.HasPrefix(up, "COPY") && strings.Contains(up, "FROM STDIN") {
		_, err := c.CopyFrom(ctx, strings.NewReader(""), sql)
		return err
	}
	_, err = c.Exec(ctx, sql).ReadAll()
	return err
}
