package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

// The guardrail tests share one more sluice serve and Envoy, configured
// with guardrails, so the stack's own serve keeps none.
var guarded struct {
	once    sync.Once
	cfg, gw string
	err     error
}

func guardedGateway(t *testing.T) (cfgPath, gateway string) {
	t.Helper()
	guarded.once.Do(func() {
		ctx := context.Background()
		c, path, err := stack.StartServeWith(ctx, "serve-guarded", func(c *config.Config) {
			c.Approvals.Store = "approvals-guarded.db"
			c.Guardrails = config.Guardrails{
				StatementTimeout: config.Duration(3 * time.Second),
				MaxRows:          10000,
				Pause:            config.Pause{SlowerThan: config.Duration(500 * time.Millisecond), After: 3, Within: config.Duration(time.Minute)},
			}
		})
		if err != nil {
			guarded.err = err
			return
		}
		guarded.cfg = path
		guarded.gw, guarded.err = stack.StartEnvoyWith(ctx, "envoy-guarded", func(e *config.Config) { e.ExtProc.Address = c.ExtProc.Listen })
	})
	if guarded.err != nil {
		t.Fatal(guarded.err)
	}
	return guarded.cfg, guarded.gw
}

// guardedURL is an agent URL through the guarded gateway.
func guardedURL(t *testing.T, sub string, groups []string) string {
	t.Helper()
	return stack.AgentURL(guardedConnect(t, devstack.DemoTarget, sub, groups))
}

// guardedConnectAs starts a connector named for the test and name, for
// an agent's own token, to the demo target through the guarded gateway.
func guardedConnectAs(t *testing.T, name, sub string, groups []string) string {
	t.Helper()
	_, gw := guardedGateway(t)
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := stack.StartConnectVia(context.Background(), "connect-"+strings.ReplaceAll(t.Name(), "/", "_")+"-"+name, gw, devstack.DemoTarget, addr, tokenFor(t, sub, groups))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return addr
}

// guardedConnect starts a connector to target through the guarded gateway.
func guardedConnect(t *testing.T, target, sub string, groups []string) string {
	t.Helper()
	_, gw := guardedGateway(t)
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := stack.StartConnectVia(context.Background(), "connect-"+strings.ReplaceAll(t.Name(), "/", "_")+"-"+target, gw, target, addr, tokenFor(t, sub, groups))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return addr
}

// sluiceAt runs the sluice CLI against the serve of config cfg.
func sluiceAt(t *testing.T, cfg string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, stack.Binary, append(args, "--config", cfg)...).CombinedOutput()
	return string(out), err
}

func pgxAt(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Must show 1: three statements slower than 500 ms within a minute pause
// the session; the next statement waits for a human; `sluice sessions
// resume` releases it and the statements after it run at once.
func TestGuardrailLatencyPausesThenResume(t *testing.T) {
	cfg, _ := guardedGateway(t)
	url := guardedURL(t, "slowpoke", []string{"analysts"})
	conn := pgxAt(t, url)
	ctx := context.Background()
	for i := range 3 {
		if _, err := conn.Exec(ctx, "SELECT pg_sleep(0.6)"); err != nil {
			t.Fatalf("slow statement %d: %v", i+1, err)
		}
	}
	type result struct {
		v   int
		err error
		at  time.Time
	}
	held := make(chan result, 1)
	go func() {
		var v int
		err := conn.QueryRow(ctx, "SELECT 41 + 1").Scan(&v)
		held <- result{v, err, time.Now()}
	}()
	approver := tokenFor(t, "alice", []string{"dba"})
	id := pendingForAt(t, cfg, approver, "SELECT 41 + 1")
	select {
	case r := <-held:
		t.Fatalf("the statement after the trip was not held: %v %v", r.v, r.err)
	case <-time.After(time.Second):
	}
	show, err := approvalsAt(t, cfg, approver, "show", id)
	if err != nil {
		t.Fatalf("show: %v\n%s", err, show)
	}
	var req struct{ Session, Reason string }
	if err := json.Unmarshal([]byte(show[strings.Index(show, "{"):]), &req); err != nil || req.Session == "" {
		t.Fatalf("cannot read the request: %v\n%s", err, show)
	}
	if !strings.Contains(req.Reason, "session paused (3 statements slower than 500ms or waiting on locks within 1m0s)") {
		t.Fatalf("reason: %q", req.Reason)
	}
	t.Logf("held %s: %s", id, req.Reason)
	// The agent itself may not resume its session.
	self := tokenFor(t, "slowpoke", []string{"dba"})
	if out, err := sluiceAt(t, cfg, "sessions", "resume", req.Session, "--token-file", self); err == nil || !strings.Contains(out, "own session") {
		t.Fatalf("self-resume: %v %s", err, out)
	}
	resumed := time.Now()
	out, err := sluiceAt(t, cfg, "sessions", "resume", req.Session, "--token-file", approver)
	if err != nil || !strings.Contains(out, "is running (by alice)") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	t.Logf("sluice sessions resume: %s", strings.TrimSpace(out))
	select {
	case r := <-held:
		if r.err != nil || r.v != 42 {
			t.Fatalf("released statement: %v %v", r.v, r.err)
		}
		t.Logf("released %s after resume", r.at.Sub(resumed).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("resume did not release the held statement")
	}
	// Normal flow: nothing more is held.
	start := time.Now()
	var v int
	if err := conn.QueryRow(ctx, "SELECT 43").Scan(&v); err != nil || v != 43 {
		t.Fatalf("after resume: %v %v", v, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a statement after resume took %s: held again?", d)
	}
	// A human can pause a session too; resuming it again restores the flow.
	if out, err := sluiceAt(t, cfg, "sessions", "pause", req.Session, "--token-file", approver, "--comment", "looking into it"); err != nil || !strings.Contains(out, "is paused") {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	go func() {
		var v int
		err := conn.QueryRow(ctx, "SELECT 44").Scan(&v)
		held <- result{v, err, time.Now()}
	}()
	id2 := pendingForAt(t, cfg, approver, "SELECT 44")
	// The pause belongs to the agent: a connection it opens now, with a
	// fresh token, waits too; another agent's does not.
	again := pgxAt(t, stack.AgentURL(guardedConnectAs(t, "again", "slowpoke", []string{"analysts"})))
	held2 := make(chan result, 1)
	go func() {
		var v int
		err := again.QueryRow(ctx, "SELECT 45").Scan(&v)
		held2 <- result{v, err, time.Now()}
	}()
	id3 := pendingForAt(t, cfg, approver, "SELECT 45")
	bystander := pgxAt(t, stack.AgentURL(guardedConnectAs(t, "bystander", "bystander", []string{"analysts"})))
	if err := bystander.QueryRow(ctx, "SELECT 46").Scan(new(int)); err != nil {
		t.Fatalf("another agent is held by slowpoke's pause: %v", err)
	}
	select {
	case r := <-held2:
		t.Fatalf("the paused agent's new connection ran: %v %v", r.v, r.err)
	default:
	}
	if out, err := sluiceAt(t, cfg, "sessions", "resume", req.Session, "--token-file", approver); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if r := <-held; r.err != nil || r.v != 44 {
		t.Fatalf("after the second resume (%s): %v %v", id2, r.v, r.err)
	}
	select {
	case r := <-held2:
		if r.err != nil || r.v != 45 {
			t.Fatalf("the new connection's statement after the resume (%s): %v %v", id3, r.v, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("resuming the agent did not release its other session's statement")
	}
	// The trip, the human pause and both resumes are in the audit trail.
	conn.Close(ctx)
	var kinds []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, _ := sluiceAt(t, cfg, "sessions", "show", req.Session)
		kinds = nil
		for _, k := range []string{"session_paused", "session_resumed"} {
			kinds = append(kinds, fmt.Sprintf("%s×%d", k, strings.Count(out, k)))
		}
		if strings.Count(out, "session_paused") == 2 && strings.Count(out, "session_resumed") == 2 {
			return
		}
	}
	t.Fatalf("audit trail: %v", kinds)
}

// Must show 2: a million-row SELECT is cut at guardrails.max_rows with a
// clear error, and the connection stays usable — with psql (simple
// protocol), and with pgx (extended protocol) inside a transaction, which
// the cut aborts on the server too.
func TestGuardrailRowLimitCutsMillionRows(t *testing.T) {
	url := guardedURL(t, "reader", []string{"analysts"})
	out, _ := psql(t, url, "SELECT g, repeat('x', 20) FROM generate_series(1, 1000000) g", "SELECT 'still usable' AS after")
	if !strings.Contains(out, "ERROR:  54000: sluice: result cut after 10000 rows: guardrails.max_rows is 10000") || !strings.Contains(out, "still usable") {
		t.Fatalf("psql:\n%.2000s", out)
	}
	t.Logf("psql: %s", strings.TrimSpace(out[strings.Index(out, "ERROR"):]))

	ctx := context.Background()
	conn := pgxAt(t, url)
	rows, _ := conn.Query(ctx, "SELECT g FROM generate_series(1, 1000000) g")
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); sqlState(err) != "54000" || n != 10000 {
		t.Fatalf("pgx: %d rows, %v", n, err)
	}
	var v int
	if err := conn.QueryRow(ctx, "SELECT 7").Scan(&v); err != nil || v != 7 {
		t.Fatalf("pgx after the cut: %v %v", v, err)
	}
	// Inside a transaction: the server's transaction is aborted as well.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM orders"); err != nil {
		t.Fatal(err)
	}
	rows, _ = tx.Query(ctx, "SELECT g FROM generate_series(1, 50000) g")
	for rows.Next() {
	}
	if sqlState(rows.Err()) != "54000" {
		t.Fatalf("in a transaction: %v", rows.Err())
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); sqlState(err) != "25P02" {
		t.Fatalf("after a cut in a transaction: want 25P02 (transaction aborted), got %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT 8").Scan(&v); err != nil || v != 8 {
		t.Fatalf("after rollback: %v %v", v, err)
	}
}

// Must show 3: the agent cannot raise or disable the statement timeout
// sluice sets; it may lower it, and RESET returns to sluice's value, which
// the database enforces.
func TestGuardrailStatementTimeoutHeld(t *testing.T) {
	url := guardedURL(t, "tuner", []string{"analysts"})
	out, _ := psql(t, url, "SHOW statement_timeout", "SET statement_timeout = 0", "SET statement_timeout = '1h'", "SHOW statement_timeout")
	if strings.Count(out, "ERROR:  42501: sluice: statement_timeout is held at 3s by sluice's guardrails") != 2 || strings.Count(out, " 3s\n") != 2 {
		t.Fatalf("psql:\n%s", out)
	}
	t.Logf("psql:\n%s", out)
	out, err := psql(t, url, "SET statement_timeout = '1s'", "SHOW statement_timeout", "RESET statement_timeout", "SHOW statement_timeout")
	if err != nil || !strings.Contains(out, " 1s\n") || !strings.Contains(out, " 3s\n") {
		t.Fatalf("lower and reset: %v\n%s", err, out)
	}
	out, _ = psql(t, url, "SELECT pg_sleep(5)")
	if !strings.Contains(out, "57014") || !strings.Contains(out, "statement timeout") {
		t.Fatalf("a 5 s statement under a 3 s timeout:\n%s", out)
	}
	// set_config is an administrative function the agent may not call.
	out, _ = psql(t, url, "SELECT set_config('statement_timeout', '0', false)")
	if !strings.Contains(out, "ERROR:  42501: sluice:") {
		t.Fatalf("set_config:\n%s", out)
	}
}

// millionMySQL selects a million generated rows (MariaDB stops recursion
// at 1000 iterations, so a thousand squared).
const millionMySQL = "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) SELECT a.n * 1000 + b.n AS n, REPEAT('x', 20) AS pad FROM s a CROSS JOIN s b"

// The same guardrails on MariaDB: sluice sets max_statement_time after its
// login and refuses raising it; a million-row result is cut with ERR and the
// connection goes on.
func TestGuardrailsMariaDB(t *testing.T) {
	addr := guardedConnect(t, mysqlTarget, "my-reader", []string{"analysts"})
	out, err := mysqlCLI(t, addr, "SELECT @@max_statement_time AS timeout; SET SESSION max_statement_time = 0; SET max_statement_time = DEFAULT; SET SESSION max_statement_time = 1; SELECT @@max_statement_time AS lowered")
	if strings.Count(out, "max_statement_time is held at 3s by sluice's guardrails") != 2 ||
		!strings.Contains(out, "timeout\n3.000000") || !strings.Contains(out, "lowered\n1.000000") {
		t.Fatalf("mysql: %v\n%s", err, out)
	}
	t.Logf("mysql:\n%s", out)
	out, _ = mysqlCLI(t, addr, millionMySQL+"; SELECT 'still usable' AS after")
	if !strings.Contains(out, "ERROR 1104 (42000)") || !strings.Contains(out, "sluice: result cut after 10000 rows: guardrails.max_rows is 10000") || !strings.Contains(out, "still usable") {
		t.Fatalf("mysql:\n%.2000s", out[max(0, len(out)-2000):])
	}
	out, _ = mysqlCLI(t, addr, "SELECT SLEEP(5) AS slept")
	if !strings.Contains(out, "1969") && !strings.Contains(out, "slept\n1") {
		t.Fatalf("a 5 s statement under a 3 s timeout:\n%s", out)
	}
	t.Logf("SELECT SLEEP(5): %s", strings.TrimSpace(out))

	// go-sql-driver, binary protocol: cut, then the connection is usable.
	db, err := sql.Open("mysql", stack.MySQLDSN(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.Query(millionMySQL+" WHERE a.n > ?", 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err == nil || !strings.Contains(err.Error(), "1104") || n != 10000 {
		t.Fatalf("driver: %d rows, %v", n, err)
	}
	rows.Close()
	var v int
	if err := db.QueryRow("SELECT ? + 1", 6).Scan(&v); err != nil || v != 7 {
		t.Fatalf("driver after the cut: %v %v", v, err)
	}
}
