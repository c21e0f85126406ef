package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/config"
	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/extproc"
	"github.com/sluicedb/sluice/pki"
	"github.com/sluicedb/sluice/token"
)

// Envoy's jwt_authn refuses an expired token with 401; sluice refuses a
// token for another audience with 401 too (jwt_authn would say 403).
func TestExpiredAndWrongAudienceTokensRefused(t *testing.T) {
	expired, err := stack.MintToken("demo-agent", []string{"analysts"}, -2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := connectStatus(t, "demo", expired); code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d %s", code, body)
	} else {
		t.Logf("expired token: %d %s", code, body)
	}
	wrong, err := token.Mint(stack.Config.Path(devstack.SigningKeyFile), token.Claims{
		Issuer: devstack.DemoIssuer, Audience: []string{"someone-else"}, Subject: "demo-agent", Groups: []string{"analysts"}, TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := connectStatus(t, "demo", wrong); code != http.StatusUnauthorized || !strings.Contains(body, "audience") {
		t.Fatalf("wrong audience: %d %s", code, body)
	} else {
		t.Logf("wrong audience: %d %s", code, body)
	}
}

// Tokens must expire, and not further ahead than jwt.max_ttl (24 h by
// default): Envoy refuses the others with 401, and so does the approvals
// API.
func TestTokensMustExpireWithinTheCap(t *testing.T) {
	key := stack.Config.Path(devstack.SigningKeyFile)
	forever, err := token.Mint(key, token.Claims{Issuer: devstack.DemoIssuer, Audience: []string{devstack.DemoAudience}, Subject: "immortal", Groups: []string{"analysts"}, NoExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	long, err := token.Mint(key, token.Claims{Issuer: devstack.DemoIssuer, Audience: []string{devstack.DemoAudience}, Subject: "long-lived", Groups: []string{"analysts"}, TTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"no exp": forever, "48 h": long} {
		code, body := connectStatus(t, "demo", tok)
		if code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, code, body)
		}
		t.Logf("%s: %d %s", name, code, strings.TrimSpace(body))
	}
	// The approvals API, with a dba's token that never expires.
	dba, err := token.Mint(key, token.Claims{Issuer: devstack.DemoIssuer, Audience: []string{devstack.DemoAudience}, Subject: "alice", Groups: []string{"dba"}, NoExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(dba), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := approvals(t, tf, "list"); err == nil || !strings.Contains(out, "exp") {
		t.Errorf("approvals API with a token without exp: %v %s", err, out)
	}
}

// The token's lifetime bounds the session: when it expires mid-session the
// session ends with a clear error, and a fresh token connects again. The
// token here expired 26 s ago: within the 30 s clock skew Envoy and sluice
// both allow, so it is accepted (not a 500), for 4 s more.
func TestTokenExpiryEndsSession(t *testing.T) {
	ctx := context.Background()
	short, err := stack.MintToken("short-lived", []string{"analysts"}, -26*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(short), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := connectTo(t, devstack.DemoTarget, tf)
	c, err := pgx.Connect(ctx, stack.AgentURL(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// A MySQL session on the same token.
	db, err := sql.Open("mysql", stack.MySQLDSN(connectTo(t, mysqlTarget, tf)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	my, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer my.Close()
	if err := my.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = c.QueryRow(qctx, "SELECT count(*) FROM orders").Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("query after the token expired: %v", err)
	}
	t.Logf("postgres after expiry: %v", err)
	// go-sql-driver reads the ERR sluice sent when the token expired.
	err = my.QueryRowContext(qctx, "SELECT count(*) FROM orders").Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("mysql query after the token expired: %v", err)
	}
	t.Logf("mysql after expiry: %v", err)
	// The connector reads the token file per connection: a fresh token works.
	fresh, _ := stack.MintToken("short-lived", []string{"analysts"}, time.Hour)
	if err := os.WriteFile(tf, []byte(fresh), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, stack.AgentURL(addr))
	if err != nil {
		t.Fatalf("reconnect with a fresh token: %v", err)
	}
	c2.Close(ctx)
}

// tokenFor writes a fresh token for an agent and returns its file.
func tokenFor(t *testing.T, sub string, groups []string) string {
	t.Helper()
	tok, err := stack.MintToken(sub, groups, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return tf
}

// The agents' clients hold no database password: sluice logs in for them,
// as the least-privileged database user mapped to their groups.
func TestBrokeredLoginsPerGroup(t *testing.T) {
	t.Setenv("PGPASSWORD", "")
	t.Setenv("MYSQL_PWD", "")
	for _, c := range []struct {
		groups []string
		user   string
	}{
		{[]string{"analysts"}, devstack.ReaderDBUser},
		{[]string{"migrators"}, devstack.AgentDBUser},
		{[]string{"migrators", "analysts"}, devstack.ReaderDBUser}, // the least privileged wins
	} {
		tf := tokenFor(t, "agent-"+strings.Join(c.groups, "-"), c.groups)
		pg := connectTo(t, devstack.DemoTarget, tf)
		// psql with a URL that has no password (PGPASSWORD empty).
		out, err := psql(t, "postgres://someone@"+pg+"/"+devstack.DemoDatabase+"", "SELECT current_user, count(*) FROM customers")
		if err != nil || !strings.Contains(strings.Join(strings.Fields(out), " "), c.user+" | 50") {
			t.Fatalf("psql as %v: %v\n%s", c.groups, err, out)
		}
		t.Logf("psql, groups %v: %s", c.groups, strings.Join(strings.Fields(out), " "))
		my := connectTo(t, mysqlTarget, tf)
		out, err = mysqlCLI(t, my, "SELECT CURRENT_USER() AS who, count(*) AS n FROM customers")
		if err != nil || !strings.Contains(out, c.user+"@%\t50") {
			t.Fatalf("mysql as %v: %v\n%s", c.groups, err, out)
		}
		t.Logf("mysql, groups %v: %s", c.groups, strings.Join(strings.Fields(out), " "))
	}
	// The reader cannot write even where a policy would allow it: the
	// database user is the second line of defence.
	tf := tokenFor(t, "writer-reader", []string{"migrators", "analysts"})
	out, _ := psql(t, "postgres://someone@"+connectTo(t, devstack.DemoTarget, tf)+"/"+devstack.DemoDatabase+"",
		"UPDATE orders SET total_cents = total_cents WHERE id = 1")
	if !strings.Contains(out, "permission denied for table orders") {
		t.Fatalf("an update as the reader: %s", out)
	}
}

// An agent whose groups may connect but map to no database login is refused
// in the headers phase, with the reason, before a byte reaches the database.
func TestNoLoginForGroupIs403(t *testing.T) {
	tok, err := stack.MintToken("ops-agent", []string{"e2e-ddl"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	code, body := connectStatus(t, devstack.DemoTarget, tok)
	if code != http.StatusForbidden || !strings.Contains(body, "no database login") {
		t.Fatalf("%d %s", code, body)
	}
	t.Logf("%d %s", code, body)
}

// findSecrets reports the files under dir whose bytes, or whose wire-trace
// events' decoded bytes, contain any of the secrets.
func findSecrets(t *testing.T, dir string, secrets []string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		hay := [][]byte{b}
		if strings.HasSuffix(path, ".jsonl") {
			for _, line := range bytes.Split(b, []byte("\n")) {
				var ev extproc.TraceEvent
				if json.Unmarshal(line, &ev) == nil {
					hay = append(hay, ev.Data, ev.ToServer, ev.ToClient)
				}
			}
		}
		for _, h := range hay {
			for _, s := range secrets {
				if bytes.Contains(h, []byte(s)) {
					found = append(found, path+": "+s)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// No database password appears in sluice's or Envoy's logs, the connectors'
// logs, or the wire traces (the session recordings of these tests), after
// brokered logins through both protocols.
func TestNoPasswordInLogsOrRecordings(t *testing.T) {
	tf := tokenFor(t, "secret-check", []string{"analysts"})
	if out, err := psql(t, "postgres://x@"+connectTo(t, devstack.DemoTarget, tf)+"/"+devstack.DemoDatabase+"", "SELECT 1"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := mysqlCLI(t, connectTo(t, mysqlTarget, tf), "SELECT 1"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	secrets := []string{devstack.AgentDBPass, devstack.ReaderDBPass}
	// The check itself must be able to fail: a planted secret is found.
	plant := t.TempDir()
	_ = os.WriteFile(filepath.Join(plant, "x.jsonl"), []byte(`{"to_server":"`+base64.StdEncoding.EncodeToString([]byte("..."+devstack.ReaderDBPass))+`"}`+"\n"), 0o600)
	if len(findSecrets(t, plant, secrets)) == 0 {
		t.Fatal("the scan misses a planted secret")
	}
	var scanned int
	// Logs, wire traces, and the audit and approval stores (SQLite files
	// and their write-ahead logs).
	patterns := []string{"*.log", "traces/*.jsonl", "config/*.db", "config/*.db-wal"}
	for _, pattern := range patterns {
		m, _ := filepath.Glob(filepath.Join(stack.Dir, pattern))
		scanned += len(m)
	}
	if scanned < 5 {
		t.Fatalf("only %d log and trace files to scan", scanned)
	}
	var found []string
	for _, pattern := range append(patterns[:1:1], append([]string{"traces"}, patterns[2:]...)...) {
		m, _ := filepath.Glob(filepath.Join(stack.Dir, pattern))
		for _, p := range m {
			found = append(found, findSecrets(t, p, secrets)...)
		}
	}
	if len(found) > 0 {
		t.Fatalf("database passwords found:\n%s", strings.Join(found, "\n"))
	}
	t.Logf("%d log, trace, audit and approval files hold no database password", scanned)
}

// Envoy fetches the issuer's keys from its JWKS URL (https, verified against
// a CA) through the generated cluster; with an untrusted server it has no
// keys, and every token is refused.
func TestJWKSFromURL(t *testing.T) {
	ctx := context.Background()
	files, err := pki.Generate(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(stack.Config.Path("keys/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	uri := srv.URL + "/.well-known/jwks.json"

	gw, err := stack.StartEnvoyWith(ctx, "envoy-jwks-uri", func(c *config.Config) {
		c.JWT.JWKSFile, c.JWT.JWKSURI, c.JWT.JWKSCAFile = "", uri, files.CACert
	})
	if err != nil {
		t.Fatal(err)
	}
	port, _ := devstack.FreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := stack.StartConnectVia(ctx, "connect-jwks-uri", gw, devstack.DemoTarget, addr, tokenFor(t, "jwks-agent", []string{"analysts"}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	out, err := psql(t, stack.AgentURL(addr), "SELECT count(*) FROM customers")
	if err != nil || !strings.Contains(out, "50") {
		t.Fatalf("through the gateway with a JWKS URL: %v\n%s", err, out)
	}
	if fetches.Load() == 0 {
		t.Fatal("Envoy never fetched the JWKS URL")
	}
	t.Logf("JWKS fetched %d time(s) from %s; query through that gateway: %s", fetches.Load(), uri, strings.Join(strings.Fields(out), " "))

	// The same URL without the CA: Envoy cannot verify the key server, so
	// it has no keys and refuses valid tokens (fails closed).
	untrusted, err := stack.StartEnvoyWith(ctx, "envoy-jwks-untrusted", func(c *config.Config) {
		c.JWT.JWKSFile, c.JWT.JWKSURI, c.JWT.JWKSCAFile = "", uri, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := stack.MintToken("jwks-agent", []string{"analysts"}, time.Hour)
	code, body := connectStatusAt(t, untrusted, devstack.DemoTarget, tok)
	if code != http.StatusUnauthorized {
		t.Fatalf("untrusted JWKS server: %d %s", code, body)
	}
	t.Logf("untrusted JWKS server: %d %s", code, body)
}

// The identity reaches sluice once, in a header jwt_authn sets from the
// verified token: a client's own copy of it is removed before, so claims a
// client writes there count for nothing.
func TestSpoofedClaimsHeaderIsStripped(t *testing.T) {
	tok, err := stack.MintToken("stranger", []string{"nobody"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	spoof := func(claims map[string]any) string {
		b, _ := json.Marshal(claims)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	forged := spoof(map[string]any{"sub": "demo-agent", "groups": []string{"analysts", "migrators"}, "aud": "sluice",
		"exp": time.Now().Add(time.Hour).Unix()})
	for name, h := range map[string]http.Header{
		"one spoofed copy":   {extproc.ClaimsHeader: {forged}},
		"two spoofed copies": {extproc.ClaimsHeader: {forged, forged}},
		"mixed case name":    {"X-Sluice-Claims": {forged}},
	} {
		// The token's own groups (nobody) may not connect: 403, whatever
		// the forged header says.
		code, body := connectWith(t, stack.Config.Envoy.Listen, "demo", tok, h)
		if code != http.StatusForbidden || !strings.Contains(body, "CONNECT on the database is not permitted") {
			t.Errorf("%s: %d %q, want 403 for the token's own groups", name, code, body)
		}
	}
	// Without a token, a forged header alone is refused by Envoy (401).
	if code, body := connectWith(t, stack.Config.Envoy.Listen, "demo", "", http.Header{extproc.ClaimsHeader: {forged}}); code != http.StatusUnauthorized {
		t.Errorf("forged claims without a token: %d %q, want 401", code, body)
	}
	// And a session opened with the forged header runs as the token says:
	// analysts may not create tables, migrators may.
	ana, _ := stack.MintToken("spoof-analyst", []string{"analysts"}, time.Hour)
	code, body := connectWith(t, stack.Config.Envoy.Listen, "demo", ana, http.Header{extproc.ClaimsHeader: {forged}})
	if code != http.StatusOK {
		t.Fatalf("analyst with a forged header: %d %q", code, body)
	}
	want := `agent=spoof-analyst target=demo db_login=sluice_reader groups=[analysts] `
	var logs []byte
	for range 20 {
		if logs, _ = os.ReadFile(filepath.Join(stack.Dir, "serve.log")); strings.Contains(string(logs), want) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(string(logs), want) {
		t.Errorf("the session of spoof-analyst did not run with the token's groups:\n%s", lastLines(string(logs), 20))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
