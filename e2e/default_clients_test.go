package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/connector"
	"github.com/sluicedb/sluice/devstack"
)

// Stock clients on their default settings, as a newcomer types them: psql
// with only -h -p -U -d (libpq's sslmode=prefer sends an SSLRequest
// first), pgbench, psycopg, the mysql client without flags.

// newcomerEnv is the environment without any PG* setting, so libpq's own
// defaults apply.
func newcomerEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// psqlDefault runs psql -h -p -U -d and nothing else but -c, with env
// (PG* variables) added to a clean environment. It fails the test if psql
// has not ended within 10 s (a hang).
func psqlDefault(t *testing.T, addr, db string, env []string, commands ...string) (string, time.Duration, error) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	args := []string{"-h", host, "-p", port, "-U", devstack.AgentDBUser, "-d", db}
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "psql", args...)
	cmd.Env = newcomerEnv(env...)
	cmd.Stdin = strings.NewReader("") // never prompt
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("psql hung (killed after 10 s): %s", out)
	}
	return string(out), time.Since(start), err
}

// mysqlDefault runs the mysql client with only -h -P -u and a database.
func mysqlDefault(t *testing.T, addr, db, sql string) (string, time.Duration, error) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mysql", "-h", host, "-P", port, "-u", devstack.AgentDBUser, db, "-e", sql)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mysql hung (killed after 10 s): %s", out)
	}
	return string(out), time.Since(start), err
}

func TestDefaultClientsPsql(t *testing.T) {
	addr := freeConnect(t, stack.TokenFile)
	out, _, err := psqlDefault(t, addr, devstack.DemoDatabase, nil, "SELECT name, email FROM customers ORDER BY id LIMIT 1", `\conninfo`)
	if err != nil || !strings.Contains(out, "Customer 1") || !strings.Contains(out, "c***@example.com") {
		t.Fatalf("psql -h -p -U -d: %v\n%s", err, out)
	}
	// prefer: the connector offers TLS at the local port, libpq takes it.
	if !strings.Contains(out, "SSL connection") {
		t.Errorf("default psql did not use the connector's local TLS:\n%s", out)
	}
	out, _, err = psqlDefault(t, addr, devstack.DemoDatabase, []string{"PGSSLMODE=require"}, "SELECT count(*) FROM customers")
	if err != nil || !strings.Contains(out, "50") {
		t.Fatalf("sslmode=require: %v\n%s", err, out)
	}
	out, _, err = psqlDefault(t, addr, devstack.DemoDatabase, []string{"PGSSLMODE=disable"}, "SELECT count(*) FROM customers")
	if err != nil || !strings.Contains(out, "50") {
		t.Fatalf("sslmode=disable: %v\n%s", err, out)
	}
	// verify-full needs a certificate the client trusts (--local-cert):
	// libpq says so itself.
	out, _, err = psqlDefault(t, addr, devstack.DemoDatabase, []string{"PGSSLMODE=verify-full"}, "SELECT 1")
	if err == nil || !strings.Contains(out, "root certificate") {
		t.Fatalf("sslmode=verify-full without a trusted certificate: %v\n%s", err, out)
	}
	// GSSAPI encryption requested where the client has credentials for it
	// is answered 'N' (prefer goes on in plaintext or TLS).
	out, _, err = psqlDefault(t, addr, devstack.DemoDatabase, []string{"PGGSSENCMODE=prefer"}, "SELECT 1 AS one")
	if err != nil || !strings.Contains(out, "1") {
		t.Fatalf("gssencmode=prefer: %v\n%s", err, out)
	}
}

func TestDefaultClientsPgbench(t *testing.T) {
	addr := freeConnect(t, stack.TokenFile)
	host, port, _ := strings.Cut(addr, ":")
	script := filepath.Join(t.TempDir(), "q.sql")
	if err := os.WriteFile(script, []byte("SELECT name FROM customers WHERE id = 7;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"simple", "prepared"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "pgbench", "-n", "-t", "50", "-c", "2", "-M", mode, "-f", script,
			"-h", host, "-p", port, "-U", devstack.AgentDBUser, devstack.DemoDatabase)
		cmd.Env = newcomerEnv()
		out, err := cmd.CombinedOutput()
		cancel()
		done := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindSubmatch(out)
		if err != nil || done == nil || string(done[1]) != "100" {
			t.Fatalf("pgbench -M %s on its defaults: %v\n%s", mode, err, out)
		}
	}
}

func TestDefaultClientsPsycopg(t *testing.T) {
	python, err := filepath.Abs("../.venv/bin/python")
	if err != nil {
		t.Fatal(err)
	}
	addr := freeConnect(t, stack.TokenFile)
	host, port, _ := strings.Cut(addr, ":")
	prog := fmt.Sprintf(`
import psycopg
with psycopg.connect("host=%s port=%s user=%s dbname=%s") as conn:
    print("ssl", conn.pgconn.ssl_in_use)
    print(conn.execute("SELECT name, email FROM customers ORDER BY id LIMIT 1").fetchone())
    try:
        conn.execute("DROP TABLE customers")
    except psycopg.Error as e:
        print("refused", e.sqlstate, e)
        conn.rollback()
    print("after", conn.execute("SELECT count(*) FROM customers").fetchone()[0])
`, host, port, devstack.AgentDBUser, devstack.DemoDatabase)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", prog)
	cmd.Env = newcomerEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psycopg: %v\n%s", err, out)
	}
	for _, want := range []string{"ssl True", "('Customer 1', 'c***@example.com')", "refused 42501", "no-ddl", "after 50"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("psycopg output lacks %q:\n%s", want, out)
		}
	}
}

// Startup refusals reach the client as a FATAL naming the reason, though
// sluice decides them before the database has said a word (Envoy drops
// bytes sent to the client before the server's first).
func TestDefaultClientsStartupRefusals(t *testing.T) {
	addr := freeConnect(t, stack.TokenFile)
	out, _, err := psqlDefault(t, addr, devstack.DemoDatabase, []string{"PGOPTIONS=-c search_path=evil"}, "SELECT 1")
	if err == nil || !strings.Contains(out, `FATAL:  sluice: startup parameter "options" is not allowed`) {
		t.Errorf("disallowed startup parameter: %v\n%s", err, out)
	}
	out, _, err = psqlDefault(t, addr, "postgres", nil, "SELECT 1")
	if err == nil || !strings.Contains(out, `FATAL:  sluice: target "demo" serves database "sluice_demo", not "postgres"`) {
		t.Errorf("wrong database: %v\n%s", err, out)
	}
	out, _, err = mysqlDefault(t, mysqlConnect(t), "mysql", "SELECT 1")
	if err == nil || !strings.Contains(out, `sluice: target "demo-mysql" serves database "sluice_demo", not "mysql"`) {
		t.Errorf("mysql, wrong database: %v\n%s", err, out)
	}
	out, _, err = mysqlDefault(t, mysqlConnect(t), devstack.DemoDatabase, "SELECT name FROM customers ORDER BY id LIMIT 1")
	if err != nil || !strings.Contains(out, "Customer 1") {
		t.Errorf("mysql on its defaults: %v\n%s", err, out)
	}
}

// rawTunnel is one tunnel through the real Envoy, without the connector's
// negotiation: the bytes are the client's as sent.
func rawTunnel(t *testing.T, target string) *connector.Tunnel {
	t.Helper()
	c, err := connector.New(connector.Config{Gateway: stack.Config.Envoy.Listen, Target: target,
		CAFile: stack.Config.Path("tls/ca.crt"), Token: connector.FileToken(stack.TokenFile)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tun, err := c.Dial(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close(); cancel() })
	return tun
}

// readAll reads what the tunnel sends until it ends or 10 s pass.
func readUntil(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	done := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		k, _ := io.ReadAtLeast(r, b, n)
		done <- b[:k]
	}()
	select {
	case b := <-done:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no answer through the tunnel within 10 s")
		return nil
	}
}

func startupMessage(params map[string]string) []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params}).Encode(nil)
	return b
}

// A client that speaks to the gateway without the connector's help: its
// SSLRequest and GSSENCRequest are answered through the real Envoy (sluice
// asks the database and passes on its 'N'), and a startup refused before
// the database has spoken still arrives as a FATAL.
func TestDefaultClientsRawNegotiation(t *testing.T) {
	for name, code := range map[string]uint32{"SSLRequest": 80877103, "GSSENCRequest": 80877104} {
		t.Run(name, func(t *testing.T) {
			tun := rawTunnel(t, devstack.DemoTarget)
			req := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code)
			if _, err := tun.Write(req); err != nil {
				t.Fatal(err)
			}
			if got := readUntil(t, tun, 1); string(got) != "N" {
				t.Fatalf("answer to %s: %q", name, got)
			}
			// The session goes on in plaintext.
			if _, err := tun.Write(startupMessage(map[string]string{"user": devstack.AgentDBUser, "database": devstack.DemoDatabase})); err != nil {
				t.Fatal(err)
			}
			fe := pgproto3.NewFrontend(tun, tun)
			for {
				m, err := fe.Receive()
				if err != nil {
					t.Fatalf("after %s: %v", name, err)
				}
				if _, ok := m.(*pgproto3.ReadyForQuery); ok {
					break
				}
				if e, ok := m.(*pgproto3.ErrorResponse); ok {
					t.Fatalf("after %s: %s", name, e.Message)
				}
			}
		})
	}
	for name, tc := range map[string]struct {
		params map[string]string
		code   string
		msg    string
	}{
		"wrong database":      {map[string]string{"user": "x", "database": "postgres"}, "28000", `serves database "sluice_demo", not "postgres"`},
		"options":             {map[string]string{"user": "x", "database": devstack.DemoDatabase, "options": "-c search_path=evil"}, "42501", `startup parameter "options" is not allowed`},
		"replication":         {map[string]string{"user": "x", "database": devstack.DemoDatabase, "replication": "database"}, "42501", `"replication"`},
		"client_encoding":     {map[string]string{"user": "x", "database": devstack.DemoDatabase, "client_encoding": "SJIS"}, "42501", "SJIS"},
		"first, no SSL asked": {map[string]string{"user": "x", "database": "other"}, "28000", `not "other"`},
	} {
		t.Run(name, func(t *testing.T) {
			tun := rawTunnel(t, devstack.DemoTarget)
			if _, err := tun.Write(startupMessage(tc.params)); err != nil {
				t.Fatal(err)
			}
			fe := pgproto3.NewFrontend(tun, tun)
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("want a FATAL, got %v", err)
			}
			e, ok := m.(*pgproto3.ErrorResponse)
			if !ok || e.Severity != "FATAL" || e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("want FATAL %s naming %q, got %#v", tc.code, tc.msg, m)
			}
			if _, err := fe.Receive(); err == nil {
				t.Fatal("the tunnel stayed open after a FATAL")
			}
		})
	}
}

// Every refusal of the tunnel itself reaches psql and the mysql client as
// their protocol's error with the cause: a bad token, a forbidden agent,
// an unknown target, the database down, sluice serve down.
func TestDefaultClientsTunnelRefused(t *testing.T) {
	ctx := context.Background()
	dead, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := fmt.Sprintf("127.0.0.1:%d", dead) // nothing listens: a database that is down
	addDead := func(c *config.Config) {
		var extra []config.Target
		for _, tg := range c.Targets {
			if tg.Name == devstack.DemoTarget || tg.Name == mysqlTarget {
				d := tg
				d.Name, d.Address = tg.Name+"-down", deadAddr
				extra = append(extra, d)
			}
		}
		c.Targets = append(c.Targets, extra...)
	}
	sc, _, err := stack.StartServeWith(ctx, "serve-refusals", addDead)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := stack.StartEnvoyWith(ctx, "envoy-refusals", func(c *config.Config) {
		addDead(c)
		c.ExtProc.Address = sc.ExtProc.Listen
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each case has its own connector, started fresh: it has not yet
	// learned the target's protocol from the gateway.
	via := func(name, target, tokenFile string) string {
		port, err := devstack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p, err := stack.StartConnectVia(ctx, "connect-refusals-"+name, gw, target, addr, tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop() })
		return addr
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("not-a-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	stranger := tokenFor(t, "stranger", []string{"strangers"})
	type tc struct {
		name, target, token, pg, my string
	}
	cases := []tc{
		{"bad-token", devstack.DemoTarget, bad, "did not accept the agent's token", "did not accept the agent's token"},
		{"forbidden", devstack.DemoTarget, stranger, "refused the connection", "refused the connection"},
		{"unknown-target", "nowhere", stack.TokenFile, `unknown target "nowhere"`, `unknown target "nowhere"`},
		{"database-down", devstack.DemoTarget + "-down", stack.TokenFile, "cannot reach the database", "cannot reach the database"},
	}
	check := func(c tc) {
		t.Run(c.name, func(t *testing.T) {
			pgTarget, myTarget := c.target, c.target
			if c.name == "database-down" {
				myTarget = mysqlTarget + "-down"
			} else if c.target == devstack.DemoTarget {
				myTarget = mysqlTarget
			}
			out, took, err := psqlDefault(t, via(c.name+"-pg", pgTarget, c.token), devstack.DemoDatabase, nil, "SELECT 1")
			if err == nil || !strings.Contains(out, "FATAL:  sluice connect: ") || !strings.Contains(out, c.pg) {
				t.Errorf("psql: %v\n%s", err, out)
			}
			t.Logf("psql answered in %v: %s", took.Round(time.Millisecond), strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]))
			out, took, err = mysqlDefault(t, via(c.name+"-my", myTarget, c.token), devstack.DemoDatabase, "SELECT 1")
			if err == nil || !strings.Contains(out, "sluice connect: ") || !strings.Contains(out, c.my) {
				t.Errorf("mysql: %v\n%s", err, out)
			}
			t.Logf("mysql answered in %v: %s", took.Round(time.Millisecond), strings.TrimSpace(out))
		})
	}
	for _, c := range cases {
		check(c)
	}
	// sluice serve stopped: Envoy fails closed, and says why.
	if err := stack.Proc("serve-refusals").Stop(); err != nil {
		t.Logf("stopping serve: %v", err)
	}
	check(tc{"sluice-down", devstack.DemoTarget, stack.TokenFile, "cannot reach its policy service", "cannot reach its policy service"})
}
