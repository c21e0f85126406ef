package postgres

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

type holdAll struct{ asked []string }

func (h *holdAll) Ask(r session.HoldRequest) session.Ticket {
	h.asked = append(h.asked, r.SQL)
	return session.Ticket{ID: "apr_1", Hold: true}
}

// Migrators' DDL needs approval in the default policies.
func heldSession(t *testing.T) (*Session, *holdAll) {
	t.Helper()
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: "demo", Protocol: "postgres", Database: "app"}
	auth := policy.NewEngine(set).Session(session.Identity{Subject: "a", Groups: []string{"migrators"}}, target)
	h := &holdAll{}
	s := NewSession(Config{Target: target, Authorizer: auth, Approvals: h})
	ready(t, s)
	return s, h
}

func TestHoldThenApprove(t *testing.T) {
	s, h := heldSession(t)
	var out session.Output
	ddl := enc(t, &pgproto3.Query{String: "CREATE TABLE t (id int)"})
	next := enc(t, &pgproto3.Query{String: "SELECT 1"})
	if err := s.FromClient(append(append([]byte(nil), ddl...), next...), &out); err != nil {
		t.Fatal(err)
	}
	if out.Hold != "apr_1" || len(out.ToServer) != 0 || len(out.ToClient) != 0 || len(h.asked) != 1 {
		t.Fatalf("held: %+v", out)
	}
	// Approved: the statement, then what waited behind it, in order.
	out.Reset()
	s.Resume(session.Verdict{ID: "apr_1", Approved: true}, &out)
	if !bytes.Equal(out.ToServer, append(ddl, next...)) {
		t.Fatalf("released: %q", out.ToServer)
	}
	// A stale verdict does nothing.
	out.Reset()
	s.Resume(session.Verdict{ID: "apr_1", Approved: true}, &out)
	if len(out.ToServer)+len(out.ToClient) != 0 {
		t.Fatal("a second verdict acted")
	}
}

func TestHoldThenDeny(t *testing.T) {
	s, _ := heldSession(t)
	var out session.Output
	if err := s.FromClient(enc(t, &pgproto3.Query{String: "DROP TABLE orders"}), &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	s.Resume(session.Verdict{ID: "apr_1", Message: "approval request apr_1 was denied by alice"}, &out)
	// The server gets the failing placeholder, never the DROP.
	if bytes.Contains(out.ToServer, []byte("DROP")) || !bytes.Contains(out.ToServer, []byte("sluice: refused")) {
		t.Fatalf("to server: %q", out.ToServer)
	}
	out.Reset()
	srv := enc(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "26000", Message: "prepared statement does not exist"}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := s.FromServer(srv, &out); err != nil {
		t.Fatal(err)
	}
	if e := errorIn(t, out.ToClient); e == nil || e.Code != "42501" || !strings.Contains(e.Message, "denied by alice") {
		t.Fatalf("client error: %+v", e)
	}
}
