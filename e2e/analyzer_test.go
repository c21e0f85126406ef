package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicedb/sluice/devstack"
)

// The ways past weaker gateways, tried with psql through the real path.
func TestAnalyzerRefusesThroughPsql(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, devstack.DemoDatabase, `
	  CREATE SCHEMA IF NOT EXISTS vault AUTHORIZATION agent;
	  CREATE TABLE IF NOT EXISTS vault.secrets (id int, secret text);
	  ALTER TABLE vault.secrets OWNER TO agent;
	  INSERT INTO vault.secrets SELECT 1, 'the launch code' WHERE NOT EXISTS (SELECT 1 FROM vault.secrets);`); err != nil {
		t.Fatal(err)
	}
	count := func(table string) int {
		c, err := stack.PG.Connect(ctx, devstack.DemoDatabase)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	orders := count("orders")
	for _, tc := range []struct{ sql, want string }{
		{"WITH d AS (DELETE FROM orders WHERE id > 0 RETURNING *) SELECT count(*) FROM d",
			"ERROR:  42501: sluice: DELETE on table public.orders is not permitted by any policy"},
		{"DO $$ BEGIN DELETE FROM orders; END $$",
			"ERROR:  42501: sluice: EXECUTE_DYNAMIC on the database refused by policy no-admin"},
		{"SELECT pg_read_file('/etc/passwd')",
			"ERROR:  42501: sluice: READ_SERVER_FILE on function pg_read_file refused by policy no-admin"},
		{"SET search_path = vault, public",
			"ERROR:  42501: sluice: SET_SEARCH_PATH on the database refused by policy no-admin"},
		{"SELECT set_config('search_path', 'vault', false)",
			"ERROR:  42501: sluice: SET_ROLE on function set_config refused by policy no-admin"},
		// Unqualified, "secrets" resolves where PostgreSQL would find it —
		// vault — and vault is closed to agents.
		{"SELECT * FROM secrets",
			"ERROR:  42501: sluice: SELECT on table vault.secrets refused by policy vault-closed"},
	} {
		out, err := psql(t, stack.AgentURL(""), tc.sql, "SELECT count(*) AS still_usable FROM customers")
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if !strings.Contains(out, tc.want) || strings.Contains(out, "launch code") || !strings.Contains(out, "still_usable") {
			t.Errorf("%s:\n%s\nwant %q", tc.sql, out, tc.want)
		}
	}
	if n := count("orders"); n != orders {
		t.Fatalf("orders changed from %d to %d", orders, n)
	}
	// The search_path is the database's own: public still resolves.
	out, _ := psql(t, stack.AgentURL(""), "SHOW search_path")
	if !strings.Contains(out, `"$user", public`) {
		t.Errorf("search_path changed:\n%s", out)
	}
}
