package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

// TestXDSFleet: Envoys started from `sluice envoy bootstrap --xds` take their
// listener, routes, clusters and certificate from sluice serve; a target added
// to the config file becomes reachable without restarting Envoy, and removed
// it refuses new connections while other sessions go on.
func TestXDSFleet(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, "postgres", `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	_ = stack.PG.Exec(ctx, "postgres", "CREATE DATABASE sluice_second OWNER agent")
	if err := stack.PG.Exec(ctx, "sluice_second", "SET ROLE agent; CREATE TABLE IF NOT EXISTS planets (name text); INSERT INTO planets VALUES ('mars'); GRANT SELECT ON planets TO "+devstack.ReaderDBUser); err != nil {
		t.Fatal(err)
	}
	original, err := os.ReadFile(stack.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.WriteFile(stack.ConfigPath, original, 0o644)
		time.Sleep(2 * time.Second)
	})

	_, listenA, err := stack.StartXDSEnvoy(ctx, "xds-a")
	if err != nil {
		t.Fatal(err)
	}
	via := func(name, gateway, target string) string {
		port, _ := devstack.FreePort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if _, err := stack.StartConnectVia(ctx, name, gateway, target, addr, stack.TokenFile); err != nil {
			t.Fatal(err)
		}
		return addr
	}
	demoA := via("connect-xds-a-demo", listenA, devstack.DemoTarget)
	live, err := pgx.Connect(ctx, stack.AgentURL(demoA))
	if err != nil {
		t.Fatalf("session through the xds envoy: %v", err)
	}
	defer live.Close(ctx)
	var n int
	if err := live.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 50 {
		t.Fatalf("query through the xds envoy: %d %v", n, err)
	}

	// Add a target to the config file.
	c, err := config.Load(stack.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	second := c.Targets[0]
	second.Name, second.Database, second.Tags = "second", "sluice_second", map[string]string{"env": "dev"}
	second.CatalogURL = strings.Replace(second.CatalogURL, "/sluice_demo?", "/sluice_second?", 1)
	c.Targets = append(c.Targets, second)
	start := time.Now()
	if err := c.Write(stack.ConfigPath); err != nil {
		t.Fatal(err)
	}
	secondA := via("connect-xds-a-second", listenA, "second")
	url := fmt.Sprintf("postgres://%s@%s/sluice_second", devstack.AgentDBUser, secondA)
	var took time.Duration
	for {
		out, err := psql(t, url, "SELECT name FROM planets")
		if err == nil && strings.Contains(out, "mars") {
			took = time.Since(start)
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("second target not reachable after %v:\n%s", time.Since(start), out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Reported, not asserted: speed is for benchmarks; the deadline above
	// only bounds the wait.
	t.Logf("added target reachable through the running envoy after %v", took)

	// A second Envoy served by the same sluice.
	_, listenB, err := stack.StartXDSEnvoy(ctx, "xds-b")
	if err != nil {
		t.Fatal(err)
	}
	out, err := psql(t, fmt.Sprintf("postgres://%s@%s/sluice_second", devstack.AgentDBUser, via("connect-xds-b-second", listenB, "second")), "SELECT name FROM planets")
	if err != nil || !strings.Contains(out, "mars") {
		t.Fatalf("through the second envoy: %v\n%s", err, out)
	}

	// An invalid config is refused; everything stays.
	if err := os.WriteFile(stack.ConfigPath, []byte("targets: [{name: Bad_Name}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if out, err := psql(t, url, "SELECT name FROM planets"); err != nil || !strings.Contains(out, "mars") {
		t.Fatalf("after an invalid config: %v\n%s", err, out)
	}

	// Remove the target: new connections fail clearly; others go on.
	if err := os.WriteFile(stack.ConfigPath, original, 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for {
		out, err := psql(t, url, "SELECT 1")
		if err != nil && strings.Contains(out, `FATAL:  sluice connect: unknown target "second"`) {
			t.Logf("after removal: %s", strings.TrimSpace(out))
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("removed target still reachable:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := live.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatalf("established session to demo broken by the change: %v", err)
	}
}
