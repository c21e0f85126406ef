// Package e2e runs sluice's data path for real: PostgreSQL from Debian, the
// pinned Envoy 1.40 binary, and the sluice serve and connect processes built
// from this checkout, driven by stock clients (psql, pgbench, pgx).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicedb/sluice/devstack"
)

var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin := os.Getenv("SLUICE_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "sluice")
		out, err := exec.Command("go", "build", "-o", bin, "../cmd/sluice").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "cannot build sluice: %v\n%s", err, out)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	traces := filepath.Join(dir, "traces")
	_ = os.MkdirAll(traces, 0o755)
	stack, err = devstack.Up(ctx, devstack.Options{
		Dir: dir, Binary: bin, ServeArgs: []string{"--trace-dir", traces},
		// pgbench -i runs DDL; the default policies would hold it for approval.
		ExtraPolicies: map[string]string{"e2e.cedar": `@id("e2e-ddl")
permit (principal in Sluice::Group::"e2e-ddl", action in Sluice::Action::"ddl", resource);
@id("e2e-connect")
permit (principal in Sluice::Group::"e2e-ddl", action == Sluice::Action::"connect", resource);
@id("vault-closed")
forbid (principal, action, resource in Sluice::Schema::"demo/vault");
@id("mongo-vault-closed")
forbid (principal, action, resource in Sluice::Table::"demo-mongo/sluice_demo.vault");
@id("tokens-may-group")
permit (principal, action == Sluice::Action::"use_masked", resource)
when { resource.hasTag("mask") && resource.getTag("mask") == "token" };`,
			"e2e-approvals.cedar": carefulPolicy,
			"e2e.entities.json": `[{"uid": {"type": "Sluice::Column", "id": "demo/public.visits.visitor_email"}, "attrs": {}, "parents": [], "tags": {"pii": "email", "mask": "token"}},
{"uid": {"type": "Sluice::Column", "id": "demo-mongo/sluice_demo.payroll.salary"}, "attrs": {}, "parents": [], "tags": {"pii": "salary"}},
{"uid": {"type": "Sluice::Column", "id": "demo-mongo/sluice_demo.payroll.email"}, "attrs": {}, "parents": [], "tags": {"pii": "email"}}]`},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot start the stack (run scripts/setup first): %v\n", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		dumpLogs(dir)
	}
	if err := stack.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the stack:", err)
	}
	if code == 0 && os.Getenv("SLUICE_E2E_KEEP") == "" {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "e2e state kept in", dir)
	}
	return code
}

// dumpLogs prints the tail of every process log, only when a test failed.
func dumpLogs(dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		fmt.Fprintf(os.Stderr, "===== %s\n%s\n", l, b)
	}
}

// psql runs the stock psql client with the given URL and commands.
func psql(t *testing.T, url string, commands ...string) (string, error) {
	t.Helper()
	args := []string{url, "-X", "-w", "-v", "VERBOSITY=verbose"} // -w: never prompt for a password
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "psql", args...).CombinedOutput()
	return string(out), err
}

// agentConnect starts a connector for a token with the given groups and
// returns the agent URL through it.
func agentConnect(t *testing.T, sub string, groups []string) string {
	t.Helper()
	return stack.AgentURL(freeConnect(t, tokenFor(t, sub, groups)))
}

// freeConnect starts `sluice connect` to the demo target with a token file
// ("" for none) and returns its address.
func freeConnect(t *testing.T, tokenFile string) string {
	return connectTo(t, devstack.DemoTarget, tokenFile)
}

func connectTo(t *testing.T, target, tokenFile string) string {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	name := "connect-" + strings.ReplaceAll(t.Name(), "/", "_")
	p, err := stack.StartConnect(context.Background(), name, target, addr, tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return addr
}
