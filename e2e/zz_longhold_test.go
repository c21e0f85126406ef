package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluicedb/sluice/approval"
)

// Runs last (files run in name order): the statement held since
// TestApprovalLongHoldStart, approved after three minutes, completed
// through the real Envoy — no idle timeout cut it.
func TestApprovalLongHoldCompleted(t *testing.T) {
	if !longHold.started {
		t.Skip("TestApprovalLongHoldStart did not run")
	}
	select {
	case r := <-longHold.done:
		if r.err != nil || !strings.Contains(r.out, "DELETE 1") {
			t.Fatalf("the statement held for 3 minutes: %v\n%s", r.err, r.out)
		}
		t.Logf("held %v through the real Envoy, then approved: psql printed %q", longHold.held.Round(time.Second), strings.TrimSpace(r.out))
	case <-time.After(5 * time.Minute):
		t.Fatal("the held statement never completed")
	}
}

// It restarts sluice serve, so it runs after the long hold has completed.
// A pending request survives sluice restarting: the waiting client's
// session ends with a clear error; the request stays decidable, and once
// approved the statement runs when resubmitted.
func TestApprovalSurvivesRestart(t *testing.T) {
	seedItems(t, "approval_restart", 3)
	approver := tokenFor(t, "alice", []string{"dba"})
	url := agentConnect(t, "cleaner", []string{"migrators", "careful"})
	sql := "DELETE FROM approval_restart WHERE id = 1"
	res := psqlAsync(t, url, sql)
	id := pendingFor(t, approver, sql)
	if err := stack.Serve.Stop(); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if !strings.Contains(r.out, "restarting") || !strings.Contains(r.out, id) {
		t.Fatalf("the held session when sluice stopped: %v\n%s", r.err, r.out)
	}
	t.Logf("held session at shutdown: %s", strings.Join(strings.Fields(r.out), " "))
	if err := stack.StartServe(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err := approvals(t, approver, "show", id)
	var q approval.Request
	if err != nil || json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &q) != nil || q.Status != approval.Pending {
		t.Fatalf("the request after the restart: %v %s", err, out)
	}
	if out, err := approvals(t, approver, "approve", id); err != nil {
		t.Fatalf("approve after the restart: %v %s", err, out)
	}
	out, err = psql(t, url, sql)
	if err != nil || !strings.Contains(out, "DELETE 1") {
		t.Fatalf("resubmission after the restart: %v %s", err, out)
	}
}
