package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicedb/sluice/devstack"
	"github.com/sluicedb/sluice/token"
)

// Envoy's jwt_authn refuses an expired token with 401 and a token for
// another audience with 403 ("Audiences in Jwt are not allowed").
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
	if code, body := connectStatus(t, "demo", wrong); code != http.StatusForbidden || !strings.Contains(body, "Audiences") {
		t.Fatalf("wrong audience: %d %s", code, body)
	} else {
		t.Logf("wrong audience: %d %s", code, body)
	}
}

// The token's lifetime bounds the session: when it expires mid-session the
// session ends with a clear error, and a fresh token connects again.
func TestTokenExpiryEndsSession(t *testing.T) {
	ctx := context.Background()
	short, err := stack.MintToken("short-lived", []string{"analysts"}, 4*time.Second)
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
	time.Sleep(6 * time.Second)
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = c.QueryRow(qctx, "SELECT count(*) FROM orders").Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("query after the token expired: %v", err)
	}
	t.Logf("after expiry: %v", err)
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
