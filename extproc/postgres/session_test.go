package postgres

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

func enc(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func newTestSession(t testing.TB, groups ...string) *Session {
	t.Helper()
	return sessionFor(t, session.Target{Name: "demo", Protocol: "postgres", Database: "app"}, groups...)
}

// sessionFor is a session to target for an agent in groups, under the
// default policies.
func sessionFor(t testing.TB, target session.Target, groups ...string) *Session {
	t.Helper()
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	auth := policy.NewEngine(set).Session(session.Identity{Subject: "a", Groups: groups}, target)
	return NewSession(Config{Target: target, Authorizer: auth, MaxFrame: 1 << 20})
}

// ready drives a session through startup and authentication.
func ready(t testing.TB, s *Session) {
	t.Helper()
	var out session.Output
	start := enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "app"}})
	if err := s.FromClient(start, &out); err != nil {
		t.Fatal(err)
	}
	var sm pgproto3.StartupMessage
	if err := sm.Decode(out.ToServer[4:]); err != nil || sm.Parameters["user"] != "u" || sm.Parameters["standard_conforming_strings"] != "on" {
		t.Fatalf("startup not forwarded with the pinned settings: %q", out.ToServer)
	}
	out.Reset()
	if err := s.FromServer(enc(t, &pgproto3.AuthenticationOk{}, &pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}, &pgproto3.ReadyForQuery{TxStatus: 'I'}), &out); err != nil {
		t.Fatal(err)
	}
	if s.phase != phaseReady {
		t.Fatal("not ready after ReadyForQuery")
	}
}

func errorIn(t *testing.T, b []byte) *pgproto3.ErrorResponse {
	t.Helper()
	fe := pgproto3.NewFrontend(bytes.NewReader(b), nil)
	for {
		m, err := fe.Receive()
		if err != nil {
			return nil
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			return e
		}
	}
}

// Envoy drops bytes toward the client before the database has sent one,
// so the client's SSLRequest goes to the server as an SSLRequest and its
// one-byte answer becomes sluice's 'N'; after that sluice answers itself.
func TestSSLRequestAnsweredN(t *testing.T) {
	s := newTestSession(t, "analysts")
	var out session.Output
	if err := s.FromClient(enc(t, &pgproto3.SSLRequest{}, &pgproto3.GSSEncRequest{}), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.ToClient) != 0 || !bytes.Equal(out.ToServer, appendSSLRequest(nil)) {
		t.Fatalf("before the server spoke: to client %q, to server %q", out.ToClient, out.ToServer)
	}
	out.Reset()
	if err := s.FromServer([]byte{'N'}, &out); err != nil {
		t.Fatal(err)
	}
	if string(out.ToClient) != "NN" || len(out.ToServer) != 0 {
		t.Fatalf("the server's N: to client %q, to server %q", out.ToClient, out.ToServer)
	}
	out.Reset()
	if err := s.FromClient(enc(t, &pgproto3.SSLRequest{}), &out); err != nil {
		t.Fatal(err)
	}
	if string(out.ToClient) != "N" || len(out.ToServer) != 0 {
		t.Fatalf("after the server spoke: to client %q, to server %q", out.ToClient, out.ToServer)
	}
}

// A database that answers 'S' would speak TLS next: the client gets an
// error in place of the answer and the session ends.
func TestSSLRequestServerWantsTLS(t *testing.T) {
	s := newTestSession(t, "analysts")
	var out session.Output
	_ = s.FromClient(enc(t, &pgproto3.SSLRequest{}), &out)
	out.Reset()
	_ = s.FromServer([]byte{'S'}, &out)
	if len(out.ToClient) == 0 || out.ToClient[0] != 'E' {
		t.Fatalf("to client %q", out.ToClient)
	}
	if e := errorIn(t, out.ToClient); e == nil || !strings.Contains(e.Message, "sluice connect") {
		t.Fatalf("error %+v", e)
	}
}

func TestStartupRefusals(t *testing.T) {
	for name, params := range map[string]map[string]string{
		"options":        {"user": "u", "database": "app", "options": "-c role=admin"},
		"replication":    {"user": "u", "database": "app", "replication": "database"},
		"other database": {"user": "u", "database": "postgres"},
	} {
		for _, answer := range []byte{'N', 'S'} {
			t.Run(fmt.Sprintf("%s/%c", name, answer), func(t *testing.T) {
				s := newTestSession(t, "analysts")
				var out session.Output
				err := s.FromClient(enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params}), &out)
				if err == nil {
					t.Fatal("startup accepted")
				}
				// Nothing may go to the client before the server spoke: an
				// SSLRequest makes it answer, and the FATAL replaces that.
				if len(out.ToClient) != 0 || !bytes.Equal(out.ToServer, appendSSLRequest(nil)) {
					t.Fatalf("before the server spoke: to client %q, to server %x", out.ToClient, out.ToServer)
				}
				out.Reset()
				if err := s.FromServer([]byte{answer}, &out); err != nil {
					t.Fatal(err)
				}
				e := errorIn(t, out.ToClient)
				if e == nil || e.Severity != "FATAL" || !strings.HasPrefix(e.Message, "sluice: ") {
					t.Fatalf("no FATAL to the client: %q", out.ToClient)
				}
				// The server only gets a void cancel request, which makes it hang up.
				if len(out.ToServer) != 16 || binary.BigEndian.Uint32(out.ToServer[4:]) != codeCancelRequest {
					t.Fatalf("to server: %x", out.ToServer)
				}
			})
		}
	}
	// After an SSLRequest the server has spoken: the FATAL goes at once.
	s := newTestSession(t, "analysts")
	var out session.Output
	_ = s.FromClient(enc(t, &pgproto3.SSLRequest{}), &out)
	_ = s.FromServer([]byte{'N'}, &out)
	out.Reset()
	_ = s.FromClient(enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "postgres"}}), &out)
	if e := errorIn(t, out.ToClient); e == nil || e.Code != "28000" {
		t.Fatalf("after negotiation: %q", out.ToClient)
	}
}

func TestOnlyAuthMessagesBeforeReady(t *testing.T) {
	s := newTestSession(t, "analysts")
	var out session.Output
	start := enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "u", "database": "app"}})
	_ = s.FromClient(start, &out)
	out.Reset()
	// A query pipelined behind the password would run unchecked once
	// authentication succeeds.
	err := s.FromClient(enc(t, &pgproto3.PasswordMessage{Password: "x"}, &pgproto3.Query{String: "DROP TABLE t"}), &out)
	if err == nil || bytes.Contains(out.ToServer, []byte("DROP")) {
		t.Fatalf("err=%v to server %q", err, out.ToServer)
	}
}

func TestSimpleQueryRefusedInPlace(t *testing.T) {
	s := newTestSession(t, "analysts")
	ready(t, s)
	var out session.Output
	if err := s.FromClient(enc(t, &pgproto3.Query{String: "DROP TABLE t"}), &out); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.ToServer, []byte("DROP")) {
		t.Fatal("refused statement reached the server")
	}
	// The server answers the placeholder with an error and ReadyForQuery.
	out.Reset()
	srvErr := &pgproto3.ErrorResponse{Severity: "ERROR", Code: "26000", Message: "prepared statement does not exist"}
	if err := s.FromServer(enc(t, srvErr, &pgproto3.ReadyForQuery{TxStatus: 'I'}), &out); err != nil {
		t.Fatal(err)
	}
	e := errorIn(t, out.ToClient)
	if e == nil || e.Code != "42501" || !strings.Contains(e.Message, "no-ddl") {
		t.Fatalf("client got %+v", e)
	}
	if !bytes.HasSuffix(out.ToClient, enc(t, &pgproto3.ReadyForQuery{TxStatus: 'I'})) {
		t.Fatal("no ReadyForQuery after the refusal")
	}
}

func TestPipelineRefusalKeepsOrder(t *testing.T) {
	s := newTestSession(t, "analysts")
	ready(t, s)
	var out session.Output
	msgs := enc(t,
		&pgproto3.Parse{Name: "a", Query: "SELECT 1"}, &pgproto3.Bind{PreparedStatement: "a"}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "b", Query: "DROP TABLE t"}, &pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "c", Query: "SELECT 3"}, &pgproto3.Bind{PreparedStatement: "c"}, &pgproto3.Execute{},
		&pgproto3.Sync{})
	if err := s.FromClient(msgs, &out); err != nil {
		t.Fatal(err)
	}
	if len(s.ops) != 10 {
		t.Fatalf("%d ops pending, want 10", len(s.ops))
	}
	// The server runs the first statement, parses the second, fails the
	// placeholder in place of its Bind, and skips to Sync.
	out.Reset()
	resp := enc(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ParseComplete{},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "26000"},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := s.FromServer(resp, &out); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(bytes.NewReader(out.ToClient), nil)
	var kinds []string
	for {
		m, err := fe.Receive()
		if err != nil {
			break
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			kinds = append(kinds, "E"+m.Code)
		default:
			kinds = append(kinds, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
		}
	}
	want := "ParseComplete BindComplete DataRow CommandComplete ParseComplete E42501 ReadyForQuery"
	if strings.Join(kinds, " ") != want {
		t.Fatalf("client saw %v\nwant %s", kinds, want)
	}
	if len(s.ops) != 0 {
		t.Fatalf("%d ops left", len(s.ops))
	}
}

func TestUnparseableRefusedAtParse(t *testing.T) {
	s := newTestSession(t, "analysts")
	ready(t, s)
	var out session.Output
	if err := s.FromClient(enc(t, &pgproto3.Parse{Query: "SELEC oops"}, &pgproto3.Sync{}), &out); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.ToServer, []byte("oops")) {
		t.Fatal("unparseable SQL reached the server")
	}
	out.Reset()
	_ = s.FromServer(enc(t, &pgproto3.ErrorResponse{Code: "26000"}, &pgproto3.ReadyForQuery{TxStatus: 'I'}), &out)
	if e := errorIn(t, out.ToClient); e == nil || e.Code != "42601" || !strings.Contains(e.Message, "cannot parse") {
		t.Fatalf("client got %+v", e)
	}
}

func TestFunctionCallRefused(t *testing.T) {
	s := newTestSession(t, "analysts")
	ready(t, s)
	var out session.Output
	if err := s.FromClient(enc(t, &pgproto3.FunctionCall{Function: 764}), &out); err != nil {
		t.Fatal(err)
	}
	if out.ToServer[0] != 'D' {
		t.Fatalf("fast-path call forwarded: %q", out.ToServer)
	}
}

func TestMalformedAndOversizedFrames(t *testing.T) {
	for name, b := range map[string][]byte{
		"short length": {'Q', 0, 0, 0, 2},
		"oversized":    {'Q', 0x10, 0, 0, 0},
		"unknown type": {'?', 0, 0, 0, 4},
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestSession(t, "analysts")
			ready(t, s)
			var out session.Output
			if err := s.FromClient(b, &out); err == nil {
				t.Fatal("accepted")
			}
			if e := errorIn(t, out.ToClient); e == nil || e.Code != "08P01" {
				t.Fatalf("client got %+v", e)
			}
			if !bytes.Equal(out.ToServer, []byte{'X', 0, 0, 0, 4}) {
				t.Fatalf("server got %q, want Terminate", out.ToServer)
			}
			// Everything after is dropped.
			out.Reset()
			_ = s.FromClient(enc(t, &pgproto3.Query{String: "SELECT 1"}), &out)
			if len(out.ToServer) != 0 {
				t.Fatal("traffic after a protocol error")
			}
		})
	}
}

func TestLargeDataRowStreamedNotBuffered(t *testing.T) {
	s := newTestSession(t, "analysts")
	ready(t, s)
	var out session.Output
	_ = s.FromClient(enc(t, &pgproto3.Query{String: "SELECT big FROM t"}), &out)
	// A 3 MiB row, over the 1 MiB frame limit for buffered messages.
	row := enc(t, &pgproto3.DataRow{Values: [][]byte{bytes.Repeat([]byte("x"), 3<<20)}})
	var got []byte
	for i := 0; i < len(row); i += 64 << 10 {
		out.Reset()
		if err := s.FromServer(row[i:min(i+64<<10, len(row))], &out); err != nil {
			t.Fatal(err)
		}
		got = append(got, out.ToClient...)
		if len(s.server.buf) > 64<<10 {
			t.Fatalf("buffered %d bytes of a streamed row", len(s.server.buf))
		}
	}
	if !bytes.Equal(got, row) {
		t.Fatal("row changed")
	}
}

// Shadow mode observes only: SQL sluice cannot read runs over the
// extended protocol as it does over the simple one.
func TestShadowModeSameOverBothProtocols(t *testing.T) {
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: "demo", Protocol: "postgres", Database: "app"}
	e := policy.NewEngine(set)
	e.SetShadow(true)
	const bad = "SELEC 1"
	for name, msgs := range map[string][]interface{ Encode([]byte) ([]byte, error) }{
		"simple":   {&pgproto3.Query{String: bad}},
		"extended": {&pgproto3.Parse{Query: bad}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	} {
		s := NewSession(Config{Target: target, Authorizer: e.Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, target), MaxFrame: 1 << 20})
		ready(t, s)
		var out session.Output
		if err := s.FromClient(enc(t, msgs...), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.ToClient) > 0 || !bytes.Contains(out.ToServer, []byte(bad)) {
			t.Errorf("%s: shadow mode refused %q (to client %q)", name, bad, out.ToClient)
		}
	}
}
