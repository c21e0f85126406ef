package postgres

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
)

func guardedSession(t *testing.T, l guard.Limits) *Session {
	t.Helper()
	return sessionFor(t, session.Target{Name: "demo", Protocol: "postgres", Database: "app", Guardrails: l}, "analysts")
}

// queried is a ready guarded session that sent "SELECT 1", and its output.
func queried(t *testing.T, l guard.Limits) (*Session, *session.Output) {
	t.Helper()
	s := guardedSession(t, l)
	ready(t, s)
	var out session.Output
	if err := s.FromClient(enc(t, &pgproto3.Query{String: "SELECT 1"}), &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	return s, &out
}

// received decodes what the client was sent.
func received(t *testing.T, b []byte) []pgproto3.BackendMessage {
	t.Helper()
	fe := pgproto3.NewFrontend(bytes.NewReader(b), nil)
	var out []pgproto3.BackendMessage
	for {
		m, err := fe.Receive()
		if err != nil {
			return out
		}
		switch m := m.(type) { // Receive reuses its messages
		case *pgproto3.DataRow:
			out = append(out, &pgproto3.DataRow{})
		case *pgproto3.ErrorResponse:
			c := *m
			out = append(out, &c)
		case *pgproto3.ReadyForQuery:
			out = append(out, &pgproto3.ReadyForQuery{TxStatus: m.TxStatus})
		default:
			out = append(out, m)
		}
	}
}

func kinds(ms []pgproto3.BackendMessage) string {
	var b strings.Builder
	for _, m := range ms {
		switch m := m.(type) {
		case *pgproto3.RowDescription:
			b.WriteString("T")
		case *pgproto3.DataRow:
			b.WriteString("D")
		case *pgproto3.ErrorResponse:
			b.WriteString("E")
		case *pgproto3.CommandComplete:
			b.WriteString("C")
		case *pgproto3.ReadyForQuery:
			b.WriteString("Z" + string(m.TxStatus))
		default:
			b.WriteString("?")
		}
	}
	return b.String()
}

func resultOf(t *testing.T, rows int, status byte) []byte {
	msgs := []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("n"), DataTypeOID: 23, DataTypeSize: 4, Format: 0}}},
	}
	for range rows {
		msgs = append(msgs, &pgproto3.DataRow{Values: [][]byte{[]byte("12345")}})
	}
	msgs = append(msgs, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 5")}, &pgproto3.ReadyForQuery{TxStatus: status})
	return enc(t, msgs...)
}

// Past max_rows the client gets 54000 in place of the next row, the rest of
// the answer is dropped, and ReadyForQuery goes through — whether rows
// arrive whole or streamed in pieces.
func TestRowLimitCutsResult(t *testing.T) {
	for _, chunk := range []int{1 << 20, 7} {
		s, out := queried(t, guard.Limits{MaxRows: 3})
		srv := resultOf(t, 5, 'I')
		for len(srv) > 0 {
			n := min(chunk, len(srv))
			if err := s.FromServer(srv[:n], out); err != nil {
				t.Fatal(err)
			}
			srv = srv[n:]
		}
		ms := received(t, out.ToClient)
		if got := kinds(ms); got != "TDDDEZI" {
			t.Fatalf("chunk %d: client got %s", chunk, got)
		}
		if e := ms[4].(*pgproto3.ErrorResponse); e.Code != "54000" || !strings.Contains(e.Message, "result cut after 3 rows: guardrails.max_rows is 3") {
			t.Fatalf("error: %+v", e)
		}
		if len(out.ToServer) != 0 {
			t.Fatal("sluice sent the server something outside a transaction")
		}
		// The connection goes on.
		out.Reset()
		if err := s.FromClient(enc(t, &pgproto3.Query{String: "SELECT 2"}), out); err != nil || len(out.ToServer) == 0 {
			t.Fatalf("next query: %v", err)
		}
		out.Reset()
		if err := s.FromServer(resultOf(t, 2, 'I'), out); err != nil {
			t.Fatal(err)
		}
		if got := kinds(received(t, out.ToClient)); got != "TDDCZI" {
			t.Fatalf("next query: client got %s", got)
		}
	}
}

// Inside a transaction block the server's transaction is made to fail as
// the client believes it did: sluice sends a failing statement, drops its
// error and forwards its ReadyForQuery (status E).
func TestRowLimitInTransactionAbortsIt(t *testing.T) {
	s, out := queried(t, guard.Limits{MaxBytes: 40})
	if err := s.FromServer(resultOf(t, 5, 'T'), out); err != nil {
		t.Fatal(err)
	}
	ms := received(t, out.ToClient)
	if got := kinds(ms); got != "TDDE" { // each row is 16 bytes: the third passes 40
		t.Fatalf("client got %s", got)
	}
	if e := ms[3].(*pgproto3.ErrorResponse); !strings.Contains(e.Message, "guardrails.max_bytes is 40 bytes") {
		t.Fatalf("error: %+v", e)
	}
	if ms := backend(t, out.ToServer); len(ms) == 0 {
		t.Fatal("nothing to the server")
	} else if q, ok := ms[0].(*pgproto3.Query); !ok || !strings.HasPrefix(q.String, "DO $sluice$ BEGIN RAISE EXCEPTION") {
		t.Fatalf("to the server: %T", ms[0])
	}
	out.Reset()
	if err := s.FromServer(enc(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "P0001", Message: "sluice cut…"}, &pgproto3.ReadyForQuery{TxStatus: 'E'}), out); err != nil {
		t.Fatal(err)
	}
	if got := kinds(received(t, out.ToClient)); got != "ZE" {
		t.Fatalf("after the abort: client got %s", got)
	}
}

// The statement timeout goes into the startup message, where the client
// cannot set it, and becomes the session's RESET value.
func TestStatementTimeoutAtStartup(t *testing.T) {
	s := guardedSession(t, guard.Limits{StatementTimeout: 1500 * time.Millisecond})
	var out session.Output
	start := enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "app"}})
	if err := s.FromClient(start, &out); err != nil {
		t.Fatal(err)
	}
	be := pgproto3.NewBackend(bytes.NewReader(out.ToServer), nil)
	m, err := be.ReceiveStartupMessage()
	sm, ok := m.(*pgproto3.StartupMessage)
	if err != nil || !ok || sm.Parameters["statement_timeout"] != "1500ms" || sm.Parameters["user"] != "u" {
		t.Fatalf("startup: %+v %v", m, err)
	}
	evil := enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "app", "statement_timeout": "0"}})
	if err := guardedSession(t, guard.Limits{StatementTimeout: time.Second}).FromClient(evil, &out); err == nil {
		t.Fatal("a client's own statement_timeout at startup was accepted")
	}
}
