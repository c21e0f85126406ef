package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

// crashRun runs statements through a sluice serve of its own, kills it with
// SIGKILL mid-session, and returns how many statements the client saw
// succeed, the serve's audit store, and the session's id.
func crashRun(t *testing.T, name, durability string) (acked int64, store string) {
	t.Helper()
	ctx := context.Background()
	store = name + ".db"
	c, path, err := stack.StartServeWith(ctx, "serve-"+name, func(c *config.Config) {
		c.Audit.Store, c.Audit.Durability = store, durability
		c.Approvals.Store = name + "-approvals.db"
	})
	if err != nil {
		t.Fatal(err)
	}
	store = filepath.Join(filepath.Dir(path), store)
	gw, err := stack.StartEnvoyWith(ctx, "envoy-"+name, func(e *config.Config) { e.ExtProc.Address = c.ExtProc.Listen })
	if err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := stack.StartConnectVia(ctx, "connect-"+name, gw, devstack.DemoTarget, addr, tokenFor(t, name+"-agent", []string{"analysts"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	conn, err := pgx.Connect(ctx, stack.AgentURL(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			// Every statement a new text: each is one audit event.
			if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT %d AS n", i), pgx.QueryExecModeSimpleProtocol); err != nil {
				done <- err
				return
			}
			n.Add(1)
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	serve := stack.Proc("serve-" + name)
	if err := serve.StopWith(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("%s: the client's statement after the kill failed: %v", name, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not notice the killed sluice")
	}
	return n.Load(), store
}

// A sluice killed with SIGKILL mid-session: `sluice audit verify` names the
// session it cut off, and in durable mode no statement the client saw
// succeed is missing from the trail.
func TestAuditCrashDurableModeKeepsEveryAcknowledgedStatement(t *testing.T) {
	acked, store := crashRun(t, "durable", "sync")
	st, err := audit.OpenStore(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	events, err := st.Events(context.Background(), "")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var recorded int64
	var session string
	for _, e := range events {
		if e.Kind == audit.KindStatement && e.Agent == "durable-agent" && e.Decision == "allow" && e.Error == "" {
			recorded++
			session = e.Session
		}
	}
	if acked < 10 || recorded < acked {
		t.Fatalf("durable mode: the client saw %d statements succeed, the trail holds %d", acked, recorded)
	}
	t.Logf("durable mode: %d statements acknowledged before the kill, %d in the trail", acked, recorded)
	out, err := exec.Command(stack.Binary, "audit", "verify", "--store", store).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CUT OFF session "+session) || !strings.Contains(string(out), "is gone") {
		t.Fatalf("verify after the kill: %v\n%s", err, out)
	}
	t.Logf("verify after the kill:\n%s", out)
}

// In buffered mode the kill may lose the last statements' events; verify
// still names the session it cut off.
func TestAuditCrashBufferedModeNamesTheCutOffSession(t *testing.T) {
	acked, store := crashRun(t, "buffered", "buffered")
	out, err := exec.Command(stack.Binary, "audit", "verify", "--store", store).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CUT OFF session") || !strings.Contains(string(out), "buffered-agent") {
		t.Fatalf("verify after the kill: %v\n%s", err, out)
	}
	st, err := audit.OpenStore(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recorded int64
	events, _ := st.Events(context.Background(), "")
	for _, e := range events {
		if e.Kind == audit.KindStatement && e.Decision == "allow" && e.Error == "" {
			recorded++
		}
	}
	t.Logf("buffered mode: %d statements acknowledged before the kill, %d in the trail; verify:\n%s", acked, recorded, out)
}
