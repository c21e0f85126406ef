package postgres

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

type staticSource struct{ c policy.Catalog }

func (s staticSource) Current() policy.Catalog               { return s.c }
func (s staticSource) RefreshAfter(time.Time) policy.Catalog { return s.c }

// maskingSession is a ready session of an analyst on the demo target,
// whose customers.email and ssn are tagged pii (default entities).
func maskingSession(t *testing.T) *Session {
	t.Helper()
	set, err := cedar.Default()
	if err != nil {
		t.Fatal(err)
	}
	target := session.Target{Name: "demo", Protocol: "postgres", Database: "app"}
	e := policy.NewEngine(set)
	e.SetCatalog("demo", staticSource{policy.NewStaticCatalog(1, map[string][]string{
		"public.customers": {"id", "name", "email", "ssn"},
	})})
	auth := e.Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, target)
	s := NewSession(Config{Target: target, Authorizer: auth})
	ready(t, s)
	return s
}

// exchange sends client messages, then the server's answers, and returns
// what reached the server and the client.
func exchange(t *testing.T, s *Session, client []byte, server ...[]byte) (toServer, toClient []byte) {
	t.Helper()
	var out session.Output
	if err := s.FromClient(client, &out); err != nil {
		t.Fatal(err)
	}
	toServer, toClient = append(toServer, out.ToServer...), append(toClient, out.ToClient...)
	for _, b := range server {
		out.Reset()
		if err := s.FromServer(b, &out); err != nil {
			t.Fatal(err)
		}
		toServer, toClient = append(toServer, out.ToServer...), append(toClient, out.ToClient...)
	}
	return toServer, toClient
}

var (
	textRow = &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25}}}
	realRow = &pgproto3.DataRow{Values: [][]byte{[]byte("customer1@example.com")}}
	rfq     = &pgproto3.ReadyForQuery{TxStatus: 'I'}
	srvErr  = func(code string) *pgproto3.ErrorResponse {
		return &pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: "server error " + code}
	}
)

func leaks(b []byte) bool { return bytes.Contains(b, []byte("customer1@example.com")) }

// A failed Parse leaves the statement the server already had: a second
// Parse of the same name with harmless text must not become the plan.
func TestFailedParseKeepsTheOldStatement(t *testing.T) {
	s := maskingSession(t)
	exchange(t, s, enc(t, &pgproto3.Parse{Name: "s1", Query: "SELECT email FROM customers"}, &pgproto3.Sync{}),
		enc(t, &pgproto3.ParseComplete{}, rfq))
	exchange(t, s, enc(t, &pgproto3.Parse{Name: "s1", Query: "SELECT name FROM customers"}, &pgproto3.Sync{}),
		enc(t, srvErr("42P05"), rfq))
	_, toClient := exchange(t, s, enc(t, &pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(t, &pgproto3.BindComplete{}, textRow, realRow, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq))
	if leaks(toClient) {
		t.Fatalf("the statement the server ran was not the one decided: %q", toClient)
	}
}

// A portal keeps the plan it was bound with, whatever is parsed after.
func TestPortalKeepsItsPlan(t *testing.T) {
	s := maskingSession(t)
	_, toClient := exchange(t, s, enc(t,
		&pgproto3.Parse{Query: "SELECT email FROM customers"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Parse{Query: "SELECT 'x'::text"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, textRow, &pgproto3.ParseComplete{}, realRow,
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq))
	if leaks(toClient) {
		t.Fatalf("re-parsing the unnamed statement unmasked the bound portal: %q", toClient)
	}
}

// Names sluice did not see created are refused, never left to the server.
func TestUnknownStatementAndPortalRefused(t *testing.T) {
	s := maskingSession(t)
	// SQL PREPARE shares the protocol's namespace.
	exchange(t, s, enc(t, &pgproto3.Query{String: "PREPARE p AS SELECT email FROM customers"}),
		enc(t, &pgproto3.CommandComplete{CommandTag: []byte("PREPARE")}, rfq))
	// The SQL-level one is refused by policy; names sluice never saw get
	// the server's own "does not exist" (sluice follows the server, so the
	// server has none either), and never reach it.
	for msgs, code := range map[string]string{
		string(enc(t, &pgproto3.Bind{PreparedStatement: "p"}, &pgproto3.Execute{}, &pgproto3.Sync{})):     "42501",
		string(enc(t, &pgproto3.Bind{PreparedStatement: "never"}, &pgproto3.Execute{}, &pgproto3.Sync{})): "26000",
		string(enc(t, &pgproto3.Execute{Portal: "never"}, &pgproto3.Sync{})):                              "34000",
	} {
		toServer, toClient := exchange(t, s, []byte(msgs), enc(t, srvErr("26000"), rfq))
		if bytes.Contains(toServer, []byte{'B'}) && !bytes.Contains(toServer, []byte("sluice: refused")) || errorIn(t, toClient) == nil || errorIn(t, toClient).Code != code {
			t.Fatalf("to server %q, client %q, want %s", toServer, toClient, code)
		}
	}
}

// A Close skipped after an error (up to Sync) does not drop the statement.
func TestSkippedCloseKeepsTheStatement(t *testing.T) {
	s := maskingSession(t)
	exchange(t, s, enc(t, &pgproto3.Parse{Name: "s1", Query: "SELECT email FROM customers"}, &pgproto3.Sync{}),
		enc(t, &pgproto3.ParseComplete{}, rfq))
	exchange(t, s, enc(t, &pgproto3.Parse{Name: "bad", Query: "SELECT nosuch FROM customers"}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}),
		enc(t, srvErr("42703"), rfq))
	if s.obj.stmts["s1"] == nil {
		t.Fatal("a skipped Close dropped the statement")
	}
	exchange(t, s, enc(t, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{}),
		enc(t, &pgproto3.CloseComplete{}, rfq))
	if s.obj.stmts["s1"] != nil {
		t.Fatal("a confirmed Close kept the statement")
	}
}

// A Bind naming a statement an earlier, unanswered batch parses waits
// until the server says whether that Parse succeeded.
func TestBindWaitsForAnEarlierBatch(t *testing.T) {
	s := maskingSession(t)
	var out session.Output
	if err := s.FromClient(enc(t,
		&pgproto3.Parse{Name: "s1", Query: "SELECT email FROM customers"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{}), &out); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.ToServer, []byte{'B', 0}) {
		t.Fatalf("Bind forwarded before the Parse was confirmed: %q", out.ToServer)
	}
	// The Parse fails: the Bind then names nothing and is refused.
	out.Reset()
	if err := s.FromServer(enc(t, srvErr("42601"), rfq), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out.ToServer, []byte("sluice: refused")) {
		t.Fatalf("after the failed Parse, the Bind went on: %q", out.ToServer)
	}
}

// Cursors: FETCH returns rows masked with the DECLARE's plan; a cursor
// sluice did not see declared is refused.
func TestCursorRowsMaskedWithTheDeclaredPlan(t *testing.T) {
	s := maskingSession(t)
	exchange(t, s, enc(t, &pgproto3.Query{String: "BEGIN; DECLARE c CURSOR FOR SELECT email FROM customers"}),
		enc(t, &pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}, &pgproto3.CommandComplete{CommandTag: []byte("DECLARE CURSOR")}, &pgproto3.ReadyForQuery{TxStatus: 'T'}))
	_, toClient := exchange(t, s, enc(t, &pgproto3.Query{String: "FETCH 1 FROM c"}),
		enc(t, textRow, realRow, &pgproto3.CommandComplete{CommandTag: []byte("FETCH 1")}, &pgproto3.ReadyForQuery{TxStatus: 'T'}))
	if leaks(toClient) {
		t.Fatalf("FETCH unmasked: %q", toClient)
	}
	// Through the extended protocol, the cursor is a portal too.
	_, toClient = exchange(t, s, enc(t, &pgproto3.Describe{ObjectType: 'P', Name: "c"}, &pgproto3.Execute{Portal: "c"}, &pgproto3.Sync{}),
		enc(t, textRow, realRow, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'T'}))
	if leaks(toClient) {
		t.Fatalf("Execute of the cursor unmasked: %q", toClient)
	}
	exchange(t, s, enc(t, &pgproto3.Query{String: "COMMIT"}), enc(t, &pgproto3.CommandComplete{CommandTag: []byte("COMMIT")}, rfq))
	if s.obj.portals["c"] != nil {
		t.Fatal("a cursor outlived its transaction")
	}
	toServer, toClient := exchange(t, s, enc(t, &pgproto3.Query{String: "FETCH ALL FROM c"}), enc(t, srvErr("26000"), rfq))
	if bytes.Contains(toServer, []byte("FETCH")) || !strings.Contains(errorIn(t, toClient).Message, "cursor") {
		t.Fatalf("FETCH of an unknown cursor: to server %q, client %q", toServer, toClient)
	}
}

// Lexical settings are pinned at startup and watched in ParameterStatus.
func TestServerReportingUnsafeSettingsEndsTheSession(t *testing.T) {
	for _, ps := range []*pgproto3.ParameterStatus{
		{Name: "standard_conforming_strings", Value: "off"},
		{Name: "client_encoding", Value: "SJIS"},
	} {
		s := maskingSession(t)
		var out session.Output
		err := s.FromServer(enc(t, ps), &out)
		if err == nil || s.phase != phaseClosed || !bytes.Equal(out.ToServer, []byte{'X', 0, 0, 0, 4}) {
			t.Fatalf("%s=%s: err %v, to server %q", ps.Name, ps.Value, err, out.ToServer)
		}
	}
	s := newTestSession(t, "analysts")
	var out session.Output
	err := s.FromClient(enc(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "u", "database": "app", "client_encoding": "BIG5"}}), &out)
	if err == nil {
		t.Fatal("startup with client_encoding BIG5 accepted")
	}
}

// A Sync sent during COPY FROM STDIN is ignored by the server: counting it
// would put every later answer against the wrong message.
func TestSyncDuringCopyInRefused(t *testing.T) {
	s := newTestSession(t, "migrators")
	ready(t, s)
	var out session.Output
	err := s.FromClient(enc(t, &pgproto3.Query{String: "COPY orders FROM STDIN"}, &pgproto3.Sync{}, &pgproto3.CopyDone{}), &out)
	if err == nil || s.phase != phaseClosed {
		t.Fatalf("Sync inside a COPY FROM STDIN accepted: %v", err)
	}
}

// A server answer that cannot belong to the message at the head ends the
// session rather than apply one statement's plan to another's rows.
func TestOutOfStepAnswerFailsClosed(t *testing.T) {
	s := maskingSession(t)
	var out session.Output
	_ = s.FromClient(enc(t, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Sync{}), &out)
	err := s.FromServer(enc(t, &pgproto3.ParseComplete{}, textRow), &out)
	if err == nil || s.phase != phaseClosed {
		t.Fatalf("RowDescription for a Sync accepted: %v", err)
	}
}

// Rows of another width than the analysis placed the masks in are cut.
func TestMisplacedMasksCutTheResult(t *testing.T) {
	s := maskingSession(t)
	wide := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a"), DataTypeOID: 25}, {Name: []byte("email"), DataTypeOID: 25}}}
	_, toClient := exchange(t, s, enc(t, &pgproto3.Query{String: "SELECT email FROM customers"}),
		enc(t, wide, &pgproto3.DataRow{Values: [][]byte{[]byte("x"), []byte("customer1@example.com")}},
			&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq))
	if leaks(toClient) || !strings.Contains(errorIn(t, toClient).Message, "masks cannot be placed") {
		t.Fatalf("client got %q", toClient)
	}
}

// The server's error text about a statement reading masked values is
// withheld: a failed cast would quote the value.
func TestErrorAboutMaskedValueWithheld(t *testing.T) {
	s := maskingSession(t)
	_, toClient := exchange(t, s, enc(t, &pgproto3.Query{String: "SELECT email::int FROM customers"}),
		enc(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "22P02", Message: `invalid input syntax for type integer: "customer1@example.com"`}, rfq))
	if leaks(toClient) || errorIn(t, toClient).Code != "22P02" {
		t.Fatalf("client got %q", toClient)
	}
}

// A pipeline that flushes without Sync: after an error the server skips
// every message until a Sync, those the client sends later included
// (pgx's TestPipelineFlushWithError).
func TestPipelineFlushAfterErrorSkipsLaterMessages(t *testing.T) {
	s := maskingSession(t)
	query := func(sql string) []byte {
		return enc(t, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{})
	}
	one := &pgproto3.DataRow{Values: [][]byte{[]byte("1")}}
	intRow := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 23}}}
	batch := append(append(query("select 1"), query("select 1/(3-n) from generate_series(1,10) n")...), query("select 2")...)
	batch = append(batch, enc(t, &pgproto3.Flush{})...)
	exchange(t, s, batch,
		enc(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, intRow, one, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}),
		enc(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, intRow, srvErr("22012")))
	// Sent while the server skips: no answer, until the Sync's.
	exchange(t, s, append(query("select 3"), enc(t, &pgproto3.Flush{})...))
	_, toClient := exchange(t, s, enc(t, &pgproto3.Sync{}), enc(t, rfq))
	if !bytes.Contains(toClient, []byte{'Z'}) || len(s.ops) != 0 {
		t.Fatalf("after the Sync: client %q, ops %d", toClient, len(s.ops))
	}
	// And in step again.
	_, toClient = exchange(t, s, append(query("select 4"), enc(t, &pgproto3.Sync{})...),
		enc(t, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, intRow, one, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, rfq))
	if !bytes.Contains(toClient, []byte("SELECT 1")) {
		t.Fatalf("next batch: %q", toClient)
	}
}
