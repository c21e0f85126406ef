package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Policies reload without a restart; a broken set is refused and the one in
// force stays.
func TestPolicyReloadWithoutRestart(t *testing.T) {
	dir := stack.Config.Path(stack.Config.Policies)
	extra := filepath.Join(dir, "reload-test.cedar")
	t.Cleanup(func() { os.Remove(extra); time.Sleep(3 * time.Second) })
	query := "SELECT count(*) AS n FROM orders"
	waitFor := func(want string) string {
		var out string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			out, _ = psql(t, stack.AgentURL(""), query)
			if strings.Contains(out, want) {
				return out
			}
		}
		t.Fatalf("never saw %q:\n%s", want, out)
		return ""
	}
	waitFor("(1 row)")
	if err := os.WriteFile(extra, []byte(`@id("no-orders") forbid (principal, action, resource == Sluice::Table::"demo/public.orders");`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("refused by policy no-orders")
	// A broken file: the reload is refused and no-orders stays in force.
	if err := os.WriteFile(extra, []byte(`@id("no-orders") forbid (principal, action == Sluice::Action::"selekt", resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	out := waitFor("refused by policy no-orders")
	b, _ := os.ReadFile(stack.Serve.LogPath)
	if !strings.Contains(string(b), "policy reload refused; keeping the current policies") {
		t.Fatalf("no refusal logged for the broken policy:\n%s", out)
	}
	if err := os.Remove(extra); err != nil {
		t.Fatal(err)
	}
	waitFor("(1 row)")
}
