package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

// The e2e policies make DELETEs by agents in "careful" wait for a human;
// humans in "dba" decide (the default dba-approve policy).
const carefulPolicy = `@id("careful-deletes")
forbid (principal in Sluice::Group::"careful", action == Sluice::Action::"delete", resource)
unless { context.approval.granted };
`

var requestID = regexp.MustCompile(`apr_[0-9a-f]{12}`)

// approvals runs `sluice approvals` with an approver's token against the
// stack's sluice serve.
func approvals(t *testing.T, tokenFile string, args ...string) (string, error) {
	t.Helper()
	return approvalsAt(t, stack.ConfigPath, tokenFile, args...)
}

// approvalsAt runs `sluice approvals` against the serve of config cfg.
func approvalsAt(t *testing.T, cfg, tokenFile string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(args, "--config", cfg, "--token-file", tokenFile)
	out, err := exec.CommandContext(ctx, stack.Binary, append([]string{"approvals"}, args...)...).CombinedOutput()
	return string(out), err
}

// seedItems creates a table of rows for agents to delete.
func seedItems(t *testing.T, table string, n int) {
	t.Helper()
	err := stack.PG.Exec(context.Background(), devstack.DemoDatabase, fmt.Sprintf(`SET ROLE agent;
DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (id int PRIMARY KEY, note text);
INSERT INTO %[1]s SELECT g, 'item ' || g FROM generate_series(1, %[2]d) g;`, table, n))
	if err != nil {
		t.Fatal(err)
	}
}

// pendingFor waits for a pending request whose statement contains sql.
func pendingFor(t *testing.T, approver, sql string) string {
	t.Helper()
	return pendingForAt(t, stack.ConfigPath, approver, sql)
}

func pendingForAt(t *testing.T, cfg, approver, sql string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := approvalsAt(t, cfg, approver, "list")
		if err == nil {
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, sql) {
					if id := requestID.FindString(line); id != "" {
						return id
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no pending request for %q", sql)
	return ""
}

type psqlResult struct {
	out string
	err error
	at  time.Time
}

func psqlAsync(t *testing.T, url string, sql string) <-chan psqlResult {
	ch := make(chan psqlResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "psql", url, "-X", "-w", "-v", "VERBOSITY=verbose", "-c", sql).CombinedOutput()
		ch <- psqlResult{string(out), err, time.Now()}
	}()
	return ch
}

// psql's DELETE waits on the wire while a human decides from another
// process; approved, it runs and psql prints DELETE 1.
func TestApprovalHoldThenApprove(t *testing.T) {
	seedItems(t, "approval_items", 5)
	approver := tokenFor(t, "alice", []string{"dba"})
	url := agentConnect(t, "cleaner", []string{"migrators", "careful"})
	sql := "DELETE FROM approval_items WHERE id = 1"
	res := psqlAsync(t, url, sql)
	id := pendingFor(t, approver, sql)
	// Nothing has reached the database yet.
	var n int
	c, _ := pgx.Connect(context.Background(), stack.PG.URL("postgres", stack.PG.SuperPassword, devstack.DemoDatabase))
	defer c.Close(context.Background())
	_ = c.QueryRow(context.Background(), "SELECT count(*) FROM approval_items WHERE id = 1").Scan(&n)
	if n != 1 {
		t.Fatal("the held DELETE reached the database")
	}
	show, err := approvals(t, approver, "show", id)
	if err != nil || !strings.Contains(show, `"agent": "cleaner"`) || !strings.Contains(show, "careful-deletes") || !strings.Contains(show, `"fingerprint": "pg:`) {
		t.Fatalf("show: %v\n%s", err, show)
	}
	// Nobody decides their own request: the agent's own name, even in dba.
	self := tokenFor(t, "cleaner", []string{"dba"})
	if out, err := approvals(t, self, "approve", id); err == nil || !strings.Contains(out, "own request") {
		t.Fatalf("self-approval: %v %s", err, out)
	}
	// An agent without the approve permission may not decide.
	if out, err := approvals(t, tokenFor(t, "bystander", []string{"analysts"}), "approve", id); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("approval by a non-approver: %v %s", err, out)
	}
	start := time.Now()
	if out, err := approvals(t, approver, "approve", id, "--comment", "ticket OPS-1"); err != nil {
		t.Fatalf("approve: %v %s", err, out)
	}
	select {
	case r := <-res:
		if r.err != nil || !strings.Contains(r.out, "DELETE 1") {
			t.Fatalf("psql after approval: %v\n%s", r.err, r.out)
		}
		t.Logf("approved %s; psql printed %q %v after the approval", id, strings.TrimSpace(r.out), r.at.Sub(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("psql still waiting after the approval")
	}
	_ = c.QueryRow(context.Background(), "SELECT count(*) FROM approval_items WHERE id = 1").Scan(&n)
	if n != 0 {
		t.Fatal("row 1 still there")
	}
	// A once-approval is spent: the same statement waits again.
	if out, err := approvals(t, approver, "approve", id); err == nil {
		t.Fatalf("a decided request decided again: %s", out)
	}
}

// A denial reaches psql as a protocol error naming the request and the
// approver; the connection stays usable.
func TestApprovalDenied(t *testing.T) {
	seedItems(t, "approval_denied", 3)
	approver := tokenFor(t, "alice", []string{"dba"})
	url := agentConnect(t, "cleaner", []string{"migrators", "careful"})
	sql := "DELETE FROM approval_denied WHERE id = 2"
	ch := make(chan psqlResult, 1)
	go func() {
		out, err := psql(t, url, sql, "SELECT count(*) AS left FROM approval_denied")
		ch <- psqlResult{out, err, time.Now()}
	}()
	id := pendingFor(t, approver, sql)
	if out, err := approvals(t, approver, "deny", id, "--comment", "not during business hours"); err != nil {
		t.Fatalf("deny: %v %s", err, out)
	}
	r := <-ch
	want := fmt.Sprintf("approval request %s was denied by alice: not during business hours", id)
	if !strings.Contains(r.out, "42501") || !strings.Contains(r.out, want) || !strings.Contains(r.out, " 3\n") {
		t.Fatalf("psql after the denial:\n%s", r.out)
	}
	t.Logf("denied: %s", strings.Join(strings.Fields(r.out), " "))
}

// Async mode: the agent is not held; it gets the request id at once, and
// the same statement runs once approved. Another statement is refused.
func TestApprovalAsyncWithPgx(t *testing.T) {
	ctx := context.Background()
	seedItems(t, "approval_async", 5)
	approver := tokenFor(t, "alice", []string{"dba"})
	c, err := pgx.Connect(ctx, agentConnect(t, "batch-agent", []string{"migrators", "careful", "async-agents"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	sql := "DELETE FROM approval_async WHERE id = 4"
	_, err = c.Exec(ctx, sql)
	id := requestID.FindString(fmt.Sprint(err))
	if err == nil || id == "" || !strings.Contains(err.Error(), "approval pending") {
		t.Fatalf("first attempt: %v", err)
	}
	t.Logf("first attempt: %v", err)
	if out, err := approvals(t, approver, "approve", id); err != nil {
		t.Fatalf("approve: %v %s", err, out)
	}
	tag, err := c.Exec(ctx, sql)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("resubmission after approval: %v %v", tag, err)
	}
	t.Logf("resubmitted after approval: %s", tag)
	for _, other := range []string{"DELETE FROM approval_async WHERE id = 5", sql} {
		_, err = c.Exec(ctx, other)
		if err == nil || !strings.Contains(err.Error(), "approval pending") || strings.Contains(err.Error(), id) {
			t.Fatalf("%s after the once-approval was used: %v", other, err)
		}
		t.Logf("%s: %v", other, err)
	}
}

// Two replicas share the approval store in PostgreSQL: a statement held on
// replica A is approved through replica B, and A learns of it by NOTIFY.
// A statement nobody decides times out with an error saying so.
func TestApprovalAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	if err := stack.PG.Exec(ctx, "postgres", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	_ = stack.PG.Exec(ctx, "postgres", "CREATE DATABASE sluice_state")
	seedItems(t, "approval_replicas", 5)
	storeURL := stack.PG.URL("postgres", stack.PG.SuperPassword, "sluice_state")
	// A Slack-compatible webhook receiver for replica A's notifications.
	hooks := make(chan map[string]any, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		hooks <- m
	}))
	defer hook.Close()
	replica := func(name string) (cfgPath, extproc, api string) {
		return startServeCopy(t, name, storeURL, 15*time.Second, func(c *config.Config) { c.Approvals.WebhookURL = hook.URL })
	}
	_, extA, _ := replica("a")
	cfgB, _, apiB := replica("b")
	gw, err := stack.StartEnvoyWith(ctx, "envoy-replica-a", func(c *config.Config) { c.ExtProc.Address = extA })
	if err != nil {
		t.Fatal(err)
	}
	port, _ := devstack.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := stack.StartConnectVia(ctx, "connect-replica-a", gw, devstack.DemoTarget, addr, tokenFor(t, "cleaner", []string{"migrators", "careful"})); err != nil {
		t.Fatal(err)
	}
	approver := tokenFor(t, "alice", []string{"dba"})
	viaB := func(args ...string) (string, error) {
		return approvalsAt(t, cfgB, approver, args...)
	}
	sql := "DELETE FROM approval_replicas WHERE id = 3"
	res := psqlAsync(t, stack.AgentURL(addr), sql)
	var id string
	for deadline := time.Now().Add(20 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, _ := viaB("list")
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, sql) {
				id = requestID.FindString(line)
			}
		}
	}
	if id == "" {
		t.Fatal("replica B does not list the request held on replica A")
	}
	select {
	case m := <-hooks:
		text, _ := m["text"].(string)
		blocks, _ := m["blocks"].([]any)
		if !strings.Contains(text, id) || !strings.Contains(text, sql) || !strings.Contains(text, "/#request="+id) || len(blocks) != 2 {
			t.Fatalf("webhook payload: %v", m)
		}
		t.Logf("webhook: %s", text)
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook notification")
	}
	start := time.Now()
	if out, err := viaB("approve", id); err != nil {
		t.Fatalf("approve through B (%s): %v %s", apiB, err, out)
	}
	r := <-res
	if r.err != nil || !strings.Contains(r.out, "DELETE 1") {
		t.Fatalf("psql on A after approval through B: %v\n%s", r.err, r.out)
	}
	t.Logf("held on replica A, approved through replica B (%s): psql printed %q %v later", apiB, strings.TrimSpace(r.out), r.at.Sub(start).Round(time.Millisecond))

	// Nobody decides: the hold times out (15 s on these replicas).
	sql = "DELETE FROM approval_replicas WHERE id = 4"
	start = time.Now()
	r = <-psqlAsync(t, stack.AgentURL(addr), sql)
	if !strings.Contains(r.out, "timed out after 15s") || !requestID.MatchString(r.out) {
		t.Fatalf("undecided statement: %v\n%s", r.err, r.out)
	}
	t.Logf("undecided after %v: %s", time.Since(start).Round(time.Second), strings.Join(strings.Fields(r.out), " "))
	var store *approval.Store
	if store, err = approval.Open(ctx, storeURL); err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if q, err := store.Get(ctx, requestID.FindString(r.out)); err != nil || q.Status != approval.Expired {
		t.Fatalf("the timed-out request: %+v %v", q, err)
	}
}

// The approvals page in headless Chromium (Debian's chromium): it lists the
// pending request, and clicking Approve releases the held statement.
func TestApprovalPageInChromium(t *testing.T) {
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (scripts/setup installs it)")
	}
	seedItems(t, "approval_page", 3)
	approverTok, err := stack.MintToken("alice", []string{"dba"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tf := tokenFor(t, "alice", []string{"dba"})
	sql := "DELETE FROM approval_page WHERE id = 2"
	res := psqlAsync(t, agentConnect(t, "cleaner", []string{"migrators", "careful"}), sql)
	id := pendingFor(t, tf, sql)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1400, 600))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	row := "#req-" + id
	step := func(what string, err error) {
		if err != nil {
			t.Fatalf("chromium: %s: %v", what, err)
		}
	}
	_, err = chromedp.Run(ctx, chromedp.Navigate("https://"+stack.Config.Approvals.Listen+"/#token="+approverTok))
	step("open the page", err)
	_, err = chromedp.Run(ctx, chromedp.WaitVisible(chromedp.CSS(row+" button.approve")))
	step("wait for the request's row", err)
	rowText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row)))
	step("read the row", err)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	step("screenshot", err)
	_, err = chromedp.Run(ctx, chromedp.Click(chromedp.CSS(row+" button.approve")))
	step("click Approve", err)
	_, err = chromedp.Run(ctx, chromedp.WaitVisible(`//div[@id="status" and contains(., "approved")]`))
	step("wait for the confirmation", err)
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
	step("read the confirmation", err)
	if !strings.Contains(rowText, sql) || !strings.Contains(rowText, "cleaner") {
		t.Fatalf("the page's row: %q", rowText)
	}
	// Kept outside the stack's folder, which a passing run deletes.
	png := filepath.Join(os.TempDir(), "sluice-approvals-page.png")
	if err := os.WriteFile(png, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || !strings.Contains(r.out, "DELETE 1") {
		t.Fatalf("psql after clicking Approve: %v\n%s", r.err, r.out)
	}
	t.Logf("page row: %q; after the click: %q; psql: %q; screenshot %s (%d bytes)", rowText, status, strings.TrimSpace(r.out), png, len(shot))
}

// longHold is a statement held for three minutes through the real Envoy,
// approved by a goroutine while the other tests run; the last test (in
// zz_longhold_test.go) checks that it completed.
var longHold struct {
	started bool
	done    chan psqlResult
	held    time.Duration
}

func TestApprovalLongHoldStart(t *testing.T) {
	ctx := context.Background()
	seedItems(t, "approval_long", 2)
	// Token files and the connector outlive this test: they live in the
	// stack's folder and stop with the stack.
	dir, err := os.MkdirTemp(stack.Dir, "longhold")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, sub string, groups []string) string {
		tok, err := stack.MintToken(sub, groups, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	approver := write("approver", "alice", []string{"dba"})
	// Its own sluice serve and Envoy: other tests restart the stack's.
	cfgPath, ext, _ := startServeCopy(t, "longhold", "approvals-longhold.db", 4*time.Minute)
	gw, err := stack.StartEnvoyWith(ctx, "envoy-longhold", func(c *config.Config) { c.ExtProc.Address = ext })
	if err != nil {
		t.Fatal(err)
	}
	port, _ := devstack.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := stack.StartConnectVia(ctx, "connect-longhold", gw, devstack.DemoTarget, addr,
		write("agent", "cleaner", []string{"migrators", "careful"})); err != nil {
		t.Fatal(err)
	}
	sql := "DELETE FROM approval_long WHERE id = 1"
	res := psqlAsync(t, stack.AgentURL(addr), sql)
	id := pendingForAt(t, cfgPath, approver, sql)
	longHold.started, longHold.done = true, make(chan psqlResult, 1)
	start := time.Now()
	go func() {
		time.Sleep(3 * time.Minute)
		longHold.held = time.Since(start)
		out, err := exec.Command(stack.Binary, "approvals", "approve", id, "--config", cfgPath, "--token-file", approver).CombinedOutput()
		if err != nil {
			longHold.done <- psqlResult{out: "approve failed: " + string(out), err: err}
			return
		}
		longHold.done <- <-res
	}()
}

// The mysql client's DELETE is held the same way, and runs once approved.
func TestApprovalHoldMySQL(t *testing.T) {
	if err := stack.Maria.Exec(context.Background(), "USE "+devstack.DemoDatabase+`;
DROP TABLE IF EXISTS approval_my; CREATE TABLE approval_my (id int PRIMARY KEY);
INSERT INTO approval_my VALUES (1), (2);`); err != nil {
		t.Fatal(err)
	}
	approver := tokenFor(t, "alice", []string{"dba"})
	addr := connectTo(t, mysqlTarget, tokenFor(t, "cleaner", []string{"migrators", "careful"}))
	sql := "DELETE FROM approval_my WHERE id = 1"
	ch := make(chan psqlResult, 1)
	go func() {
		out, err := mysqlCLI(t, addr, sql+"; SELECT count(*) AS n FROM approval_my")
		ch <- psqlResult{out, err, time.Now()}
	}()
	id := pendingFor(t, approver, sql)
	if out, err := approvals(t, approver, "approve", id); err != nil {
		t.Fatalf("approve: %v %s", err, out)
	}
	r := <-ch
	if r.err != nil || !strings.Contains(r.out, "n\n1") {
		t.Fatalf("mysql after approval: %v\n%s", r.err, r.out)
	}
	t.Logf("mysql, approved %s: %s", id, strings.Join(strings.Fields(r.out), " "))
}

// startServeCopy starts another sluice serve (stopped with the stack) from
// the stack's config with its own ext_proc and approvals ports, approval
// store and hold timeout; edit changes more.
func startServeCopy(t *testing.T, name, store string, timeout time.Duration, edit ...func(*config.Config)) (cfgPath, extproc, api string) {
	t.Helper()
	c, path, err := stack.StartServeWith(context.Background(), "serve-"+name, func(c *config.Config) {
		c.Approvals.Store, c.Approvals.Timeout = store, config.Duration(timeout)
		for _, e := range edit {
			e(c)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return path, c.ExtProc.Listen, c.Approvals.Listen
}
