package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/net/http2"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
)

// connectStatus opens a raw HTTP/2 CONNECT to Envoy, as a client that skips
// the connector would, and returns the status and body.
func connectStatus(t *testing.T, authority, token string) (int, string) {
	t.Helper()
	return connectStatusAt(t, stack.Config.Envoy.Listen, authority, token)
}

// connectStatusAt opens a raw CONNECT through the gateway at gw.
func connectStatusAt(t *testing.T, gw, authority, token string) (int, string) {
	t.Helper()
	return connectWith(t, gw, authority, token, nil)
}

// connectWith opens a raw CONNECT with extra request headers.
func connectWith(t *testing.T, gw, authority, token string, extra http.Header) (int, string) {
	t.Helper()
	pem, err := os.ReadFile(stack.Config.Path("tls/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+gw, pr)
	req.Host = authority
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, vs := range extra {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("CONNECT: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestNoTokenIs401(t *testing.T) {
	code, body := connectStatus(t, "demo", "")
	if code != http.StatusUnauthorized {
		t.Fatalf("CONNECT without a token: %d %s, want 401", code, body)
	}
	code, body = connectStatus(t, "demo", "not-a-jwt")
	if code != http.StatusUnauthorized {
		t.Fatalf("CONNECT with a garbage token: %d %s, want 401", code, body)
	}
	// psql through a connector without a token sees Envoy's 401 as its error.
	out, err := psql(t, stack.AgentURL(freeConnect(t, "")), "SELECT 1")
	if err == nil || !strings.Contains(out, "FATAL:  sluice connect: the gateway did not accept the agent's token: Jwt is missing") {
		t.Fatalf("psql without a token: err=%v\n%s", err, out)
	}
	t.Logf("psql without a token prints: %s", strings.TrimSpace(out))
}

func TestUnknownTargetAndGroupRefused(t *testing.T) {
	tok, err := stack.MintToken("stranger", []string{"nobody"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := connectStatus(t, "demo", tok); code != http.StatusForbidden || !strings.Contains(body, "CONNECT on the database is not permitted") {
		t.Fatalf("agent without connect permission: %d %q, want 403 with the reason", code, body)
	}
	tok, _ = stack.MintToken("demo-agent", []string{"analysts"}, time.Hour)
	if code, body := connectStatus(t, "nosuchdb", tok); code != http.StatusNotFound && code != http.StatusForbidden {
		t.Fatalf("unknown target: %d %q", code, body)
	}
}

func TestServeDownNoSession(t *testing.T) {
	ctx := context.Background()
	live, err := pgx.Connect(ctx, stack.AgentURL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(ctx)
	if err := stack.Serve.Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stack.StartServe(context.Background()); err != nil {
			t.Fatalf("cannot restart serve: %v", err)
		}
	}()
	out, err := psql(t, stack.AgentURL(""), "SELECT 1")
	if err == nil || strings.Contains(out, "(1 row)") {
		t.Fatalf("a session opened with sluice serve stopped:\n%s", out)
	}
	t.Logf("with sluice serve stopped psql prints: %s", strings.TrimSpace(out))
	// A session that was open when sluice went away is cut, not left unchecked.
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n int
	if err := live.QueryRow(qctx, "SELECT count(*) FROM customers").Scan(&n); err == nil {
		t.Fatalf("a live session kept working with sluice stopped (n=%d)", n)
	} else {
		t.Logf("live session after sluice stopped: %v", err)
	}
	tok, _ := stack.MintToken("demo-agent", []string{"analysts"}, time.Hour)
	if code, body := connectStatus(t, "demo", tok); code == http.StatusOK {
		t.Fatalf("Envoy opened a tunnel with sluice down (%s)", body)
	}
}

// Envoy reaches sluice over a Unix domain socket when both share a host
// (extproc.listen: unix:///path): the same tunnel, decisions and masks.
func TestExtProcOverUnixSocket(t *testing.T) {
	ctx := context.Background()
	sock := filepath.Join(t.TempDir(), "extproc.sock")
	cfg, _, err := stack.StartServeWith(ctx, "serve-unix", func(c *config.Config) {
		c.ExtProc.Listen, c.ExtProc.Address = "unix://"+sock, "unix://"+sock
	})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := stack.StartEnvoyWith(ctx, "envoy-unix", func(c *config.Config) { c.ExtProc.Address = cfg.ExtProc.Listen })
	if err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := stack.StartConnectVia(ctx, "connect-unix", gw, devstack.DemoTarget, addr, stack.TokenFile); err != nil {
		t.Fatal(err)
	}
	out, err := psql(t, stack.AgentURL(addr), "SELECT name, email FROM customers WHERE id = 1", "DROP TABLE customers", "SELECT 1 AS still_usable")
	if !strings.Contains(out, "c***@example.com") || !strings.Contains(out, "no-ddl") || !strings.Contains(out, "still_usable") || strings.Contains(out, "customer1@example.com") {
		t.Fatalf("through ext_proc over %s: %v\n%s", sock, err, out)
	}
}
