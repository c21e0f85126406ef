package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func pgbench(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "pgbench", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestPgbenchThroughSluice(t *testing.T) {
	// pgbench -i drops, creates, loads (COPY) and vacuums: a migrator's work.
	url := agentConnect(t, "bench-agent", []string{"migrators", "e2e-ddl"})
	out := pgbench(t, "-i", "-s", "2", url)
	if !strings.Contains(out, "done in") {
		t.Fatalf("pgbench -i:\n%s", out)
	}
	for _, mode := range []string{"simple", "prepared", "extended"} {
		out = pgbench(t, "-S", "-T", "10", "-c", "4", "-j", "2", "-M", mode, url)
		failed := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(out)
		done := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(out)
		tps := regexp.MustCompile(`tps = ([\d.]+)`).FindStringSubmatch(out)
		if failed == nil || failed[1] != "0" || done == nil || done[1] == "0" {
			t.Fatalf("pgbench -S -M %s:\n%s", mode, out)
		}
		t.Logf("pgbench -S -T 10 -c 4 -M %s through sluice: %s transactions, 0 failed, tps %s", mode, done[1], tps[1])
	}
}

func TestRefusalInTransactionAbortsIt(t *testing.T) {
	// As with a statement PostgreSQL refuses itself, the transaction is
	// aborted until ROLLBACK, and the session goes on after it.
	out, err := psql(t, stack.AgentURL(""), "BEGIN", "SELECT 1", "DROP TABLE customers", "SELECT 2", "ROLLBACK", "SELECT 3 AS after")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	for _, want := range []string{"42501: sluice: DROP", "25P02", "after"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
