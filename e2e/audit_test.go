package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicedb/sluice/audit"
)

func sluiceCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, stack.Binary, append(args, "--config", stack.ConfigPath)...).CombinedOutput()
	return string(out), err
}

// A psql session with an allowed, a masked and a refused statement leaves
// a hash-chained audit trail: `sluice sessions show` lists the three as
// decided, literals redacted; `sluice audit verify` passes, and fails
// naming the event once one is edited.
func TestAuditTrailOfAPsqlSession(t *testing.T) {
	url := agentConnect(t, "audit-agent", []string{"analysts"})
	out, _ := psql(t, url, "SELECT count(*) FROM orders WHERE total_cents > 1000",
		"SELECT name, email FROM customers WHERE id = 7", "DROP TABLE customers")
	if !strings.Contains(out, "no-ddl") {
		t.Fatalf("psql: %s", out)
	}
	var session string
	for deadline := time.Now().Add(10 * time.Second); session == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		list, err := sluiceCmd(t, "sessions", "list")
		if err != nil {
			t.Fatalf("sessions list: %v %s", err, list)
		}
		for _, line := range strings.Split(list, "\n") {
			if f := strings.Fields(line); len(f) >= 7 && f[2] == "audit-agent" && f[4] == "3" {
				session = f[0]
			}
		}
	}
	if session == "" {
		t.Fatal("the session is not in the audit trail")
	}
	show, err := sluiceCmd(t, "sessions", "show", session)
	if err != nil {
		t.Fatalf("sessions show: %v %s", err, show)
	}
	for _, want := range []string{
		"open", "audit-agent (groups analysts) → demo",
		"allow  SELECT count(*) FROM orders WHERE total_cents > $1  → 1 rows",
		"allow  SELECT name, email FROM customers WHERE id = $1  [masked: email]  → 1 rows",
		"deny   DROP TABLE customers  [masked:", // not masked: the marker must not appear
	} {
		if strings.HasPrefix(want, "deny") {
			if !strings.Contains(show, "deny   DROP TABLE customers  → sluice: DROP on table public.customers refused by policy no-ddl") {
				t.Errorf("refused statement missing:\n%s", show)
			}
			continue
		}
		if !strings.Contains(show, want) {
			t.Errorf("missing %q in:\n%s", want, show)
		}
	}
	if strings.Contains(show, "1000") || strings.Contains(show, "= 7") {
		t.Errorf("literals not redacted:\n%s", show)
	}
	t.Logf("sessions show %s:\n%s", session, show)
	// The replay: what the agent saw, masked values masked.
	rep, err := sluiceCmd(t, "sessions", "replay", session)
	if err != nil {
		t.Fatalf("replay: %v %s", err, rep)
	}
	for _, want := range []string{
		"demo=> SELECT count(*) FROM orders WHERE total_cents > $1", " count", "(1 rows)",
		"demo=> SELECT name, email FROM customers WHERE id = $1", " Customer 7", "***@example.com",
		"demo=> DROP TABLE customers", "ERROR: sluice: DROP on table public.customers refused by policy no-ddl",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("replay lacks %q:\n%s", want, rep)
		}
	}
	if strings.Contains(rep, "customer7@") || strings.Contains(rep, "customer.7@") {
		t.Errorf("replay shows a real email:\n%s", rep)
	}
	t.Logf("sessions replay %s:\n%s", session, rep)
	if out, err := sluiceCmd(t, "audit", "verify"); err != nil || !strings.Contains(out, "every chain intact") {
		t.Fatalf("verify, intact: %v %s", err, out)
	} else {
		t.Logf("verify: %s", strings.TrimSpace(out))
	}
	// Edit the refused statement's record: verify names it.
	st, err := audit.OpenStore(context.Background(), stack.Config.AuditStore())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.DB().Exec(`UPDATE sluice_audit SET event = replace(event, '"decision":"deny"', '"decision":"allow"') WHERE session = ? AND seq = 4`, session); err != nil {
		t.Fatal(err)
	}
	out, err = sluiceCmd(t, "audit", "verify")
	if err == nil || !strings.Contains(out, "FAIL session "+session+" event 4: content does not match its hash") {
		t.Fatalf("verify after an edit: %v %s", err, out)
	}
	t.Logf("verify after editing event 4: %s", strings.TrimSpace(out))
	// Put it back, so the trail verifies again for later checks.
	if _, err := st.DB().Exec(`UPDATE sluice_audit SET event = replace(event, '"decision":"allow","reason":"DROP', '"decision":"deny","reason":"DROP') WHERE session = ? AND seq = 4`, session); err != nil {
		t.Fatal(err)
	}
	// A dropped and a reordered event, on consistent copies of the store.
	for _, c := range []struct{ name, sql, want string }{
		{"deleted", `DELETE FROM sluice_audit WHERE session = '` + session + `' AND seq = 3`, "event 4: expected event 3 here"},
		{"reordered", `UPDATE sluice_audit SET id = -id WHERE session = '` + session + `' AND seq = 4`, "event 4: expected event 1 here"},
	} {
		cp := filepath.Join(t.TempDir(), c.name+".db")
		if _, err := st.DB().Exec("VACUUM INTO '" + cp + "'"); err != nil {
			t.Fatal(err)
		}
		cs, err := audit.OpenStore(context.Background(), cp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.DB().Exec(c.sql); err != nil {
			t.Fatal(err)
		}
		cs.Close()
		out, err := exec.Command(stack.Binary, "audit", "verify", "--store", cp).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "FAIL session "+session+" "+c.want) {
			t.Fatalf("verify after a %s event: %v %s", c.name, err, out)
		}
		t.Logf("verify after a %s event: %s", c.name, strings.SplitN(string(out), "\n", 2)[0])
	}
}

// MySQL statements are audited too: decision, masking, rows, errors.
func TestAuditTrailOfAMySQLSession(t *testing.T) {
	addr := connectTo(t, mysqlTarget, tokenFor(t, "audit-my-agent", []string{"analysts"}))
	out, _ := mysqlCLI(t, addr, "SELECT name, email FROM customers WHERE id < 4; DROP TABLE customers")
	if !strings.Contains(out, "no-ddl") {
		t.Fatalf("mysql: %s", out)
	}
	var session string
	for deadline := time.Now().Add(10 * time.Second); session == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		list, _ := sluiceCmd(t, "sessions", "list")
		for _, line := range strings.Split(list, "\n") {
			if f := strings.Fields(line); len(f) >= 7 && f[2] == "audit-my-agent" && f[4] == "2" {
				session = f[0]
			}
		}
	}
	if session == "" {
		t.Fatal("the MySQL session is not in the audit trail")
	}
	show, err := sluiceCmd(t, "sessions", "show", session)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"demo-mysql", "allow  select `name` , `email` from `customers` where `id` < ?  [masked: email]  → 3 rows", "deny   drop table `customers`  → sluice: DROP on table sluice_demo.customers refused by policy no-ddl"} {
		if !strings.Contains(show, want) {
			t.Errorf("missing %q in:\n%s", want, show)
		}
	}
	t.Logf("sessions show %s:\n%s", session, show)
}
