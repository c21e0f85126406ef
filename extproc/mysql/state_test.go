package mysql

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// readySession is a logged-in session of an analyst on demo-mysql, its
// setup answered with mode.
func readySession(t *testing.T, mode string) (*Session, *policy.Authorizer) {
	t.Helper()
	h := map[string]string{"target": "demo-mysql", "agent": "a", "database": "sluice_demo"}
	auth := newAuthorizer(t, h, []string{"analysts"})
	s := NewSession(Config{Target: session.Target{Name: "demo-mysql", Protocol: "mysql", Database: "sluice_demo"}, Authorizer: auth})
	var out session.Output
	for _, step := range []func() error{
		func() error { return s.FromServer(greetingPacket(pluginNative), &out) },
		func() error { return s.FromClient(clientHandshake("agent", "sluice_demo"), &out) },
		func() error { return s.FromServer(packet([]byte{0, 0, 0, 2, 0, 0, 0}, 2), &out) },
		func() error { return s.FromServer(lexicalAnswer(mode, "utf8mb4"), &out) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.setup) != 0 || s.phase != phaseCommand {
		t.Fatal("session not ready")
	}
	return s, auth
}

func cmd(c byte, body string) []byte { return packet(append([]byte{c}, body...), 0) }

func send(t *testing.T, s *Session, fromClient bool, b []byte) session.Output {
	t.Helper()
	var out session.Output
	var err error
	if fromClient {
		err = s.FromClient(b, &out)
	} else {
		err = s.FromServer(b, &out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var okPacket = []byte{0, 0, 0, 2, 0, 0, 0}

// Commands pipelined in one write are decided one at a time, each after
// the server answered the one before.
func TestPipelinedCommandsWaitForTheAnswerBefore(t *testing.T) {
	s, _ := readySession(t, "")
	first, second := cmd(comQuery, "SELECT 1"), cmd(comQuery, "SELECT email FROM customers")
	out := send(t, s, true, append(append([]byte(nil), first...), second...))
	if !bytes.Equal(out.ToServer, first) {
		t.Fatalf("to server %q, want the first command only", out.ToServer)
	}
	out = send(t, s, false, packet(okPacket, 1))
	if !bytes.Equal(out.ToServer, second) {
		t.Fatalf("after the first answer: %q", out.ToServer)
	}
}

// A statement id is known only from the server's PREPARE_OK; executing an
// id sluice did not see prepared is refused.
func TestStatementIDsFollowPrepareOK(t *testing.T) {
	s, _ := readySession(t, "")
	exec := func(id uint32) []byte {
		b := []byte{comStmtExecute}
		b = binary.LittleEndian.AppendUint32(b, id)
		b = append(b, 0, 1, 0, 0, 0)
		return packet(b, 0)
	}
	out := send(t, s, true, exec(1))
	if len(out.ToServer) != 0 || !bytes.Contains(out.ToClient, []byte("not one sluice saw prepared")) {
		t.Fatalf("unknown id: to server %q, client %q", out.ToServer, out.ToClient)
	}
	// PREPARE and EXECUTE pipelined: the execute waits for PREPARE_OK.
	out = send(t, s, true, append(cmd(comStmtPrepare, "SELECT email FROM customers"), exec(7)...))
	if bytes.Contains(out.ToServer, []byte{comStmtExecute}) {
		t.Fatal("EXECUTE sent before PREPARE_OK")
	}
	prepOK := []byte{0}
	prepOK = binary.LittleEndian.AppendUint32(prepOK, 7)
	prepOK = append(prepOK, 1, 0, 0, 0, 0, 0, 0)
	out = send(t, s, false, append(packet(prepOK, 1), columnDefPacket("email", 2)...))
	if !bytes.Contains(out.ToServer, []byte{comStmtExecute, 7, 0, 0, 0}) || s.stmts[7].sql != "SELECT email FROM customers" {
		t.Fatalf("after PREPARE_OK: %q %v", out.ToServer, s.stmts)
	}
}

// MariaDB's id 0xFFFFFFFF runs the last statement prepared: sluice rewrites
// it to that id, and refuses it after a failed prepare.
func TestLastPreparedIDIsMadeConcrete(t *testing.T) {
	s, _ := readySession(t, "")
	prepOK := binary.LittleEndian.AppendUint32([]byte{0}, 9)
	prepOK = append(prepOK, 0, 0, 0, 0, 0, 0, 0)
	send(t, s, true, cmd(comStmtPrepare, "SELECT 1"))
	send(t, s, false, packet(prepOK, 1))
	execAny := packet(append(binary.LittleEndian.AppendUint32([]byte{comStmtExecute}, stmtIDAny), 0, 1, 0, 0, 0), 0)
	out := send(t, s, true, execAny)
	if !bytes.Contains(out.ToServer, []byte{comStmtExecute, 9, 0, 0, 0}) {
		t.Fatalf("id -1 not made concrete: %q", out.ToServer)
	}
	send(t, s, false, packet(okPacket, 1))
	// A prepare sluice allows but the server fails (say, a lock timeout).
	send(t, s, true, cmd(comStmtPrepare, "SELECT name FROM customers"))
	send(t, s, false, packet(errPayload(1205, "HY000", "lock wait timeout"), 1))
	out = send(t, s, true, execAny)
	if len(out.ToServer) != 0 {
		t.Fatalf("id -1 after a failed prepare forwarded: %q", out.ToServer)
	}
}

// A cursor's rows (COM_STMT_FETCH) are masked with the execute's plan; a
// fetch on a statement without a cursor sluice saw opened is refused.
func TestCursorFetchMasked(t *testing.T) {
	s, _ := readySession(t, "")
	prepOK := binary.LittleEndian.AppendUint32([]byte{0}, 3)
	prepOK = append(prepOK, 1, 0, 0, 0, 0, 0, 0)
	send(t, s, true, cmd(comStmtPrepare, "SELECT email FROM customers"))
	send(t, s, false, append(packet(prepOK, 1), textColumnDef("email", 2)...))
	fetch := packet(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32([]byte{comStmtFetch}, 3), 10), 0)
	if out := send(t, s, true, fetch); len(out.ToServer) != 0 {
		t.Fatal("fetch without a cursor forwarded")
	}
	exec := packet(append(binary.LittleEndian.AppendUint32([]byte{comStmtExecute}, 3), cursorReadOnly, 1, 0, 0, 0), 0)
	send(t, s, true, exec)
	// Column count, definition, then OK (deprecated EOF) with CURSOR_EXISTS.
	send(t, s, false, append(append(packet([]byte{1}, 1), textColumnDef("email", 2)...), packet([]byte{0xFE, 0, 0, 0x42, 0, 0, 0}, 3)...))
	if s.cursors[3] == nil || s.resp.awaiting() {
		t.Fatal("cursor not recorded")
	}
	send(t, s, true, fetch)
	row := append([]byte{0, 0}, append(appendLenenc(nil, 21), "customer1@example.com"...)...)
	out := send(t, s, false, append(packet(row, 1), packet([]byte{0xFE, 0, 0, 0x82, 0, 0, 0}, 2)...))
	if bytes.Contains(out.ToClient, []byte("customer1@example.com")) || !bytes.Contains(out.ToClient, []byte("c***@example.com")) {
		t.Fatalf("fetched row: %q", out.ToClient)
	}
	if s.cursors[3] != nil {
		t.Fatal("cursor kept after its last row")
	}
}

// COM_RESET_CONNECTION returns every variable to its global value: sluice
// reads the settings again and forgets the prepared statements.
func TestResetConnectionRunsSetupAgain(t *testing.T) {
	s, auth := readySession(t, "")
	s.stmts[5] = prepared{sql: "SELECT 1"}
	send(t, s, true, cmd(comResetConnection, ""))
	out := send(t, s, false, packet(okPacket, 1))
	if !bytes.Contains(out.ToServer, []byte(lexicalQuery)) || len(s.stmts) != 0 {
		t.Fatalf("after reset: %q, statements %v", out.ToServer, s.stmts)
	}
	q := cmd(comQuery, `SELECT "email" FROM customers`)
	if out := send(t, s, true, q); len(out.ToServer) != 0 {
		t.Fatal("a command went ahead of the setup")
	}
	out = send(t, s, false, lexicalAnswer("ANSI_QUOTES", "latin1"))
	if !bytes.Equal(out.ToServer, q) {
		t.Fatalf("after setup: %q", out.ToServer)
	}
	if d := auth.AuthorizeSQL(`SELECT "email" FROM customers`); len(d.Masked) == 0 || len(d.Masked[0]) == 0 {
		t.Fatal("the mode read after the reset is not the one parsed under")
	}
}

// sql_mode and USE apply when the server confirms them.
func TestModeAndDatabaseFollowTheServer(t *testing.T) {
	s, auth := readySession(t, "")
	send(t, s, true, cmd(comQuery, "SET sql_mode = 'ANSI_QUOTES'"))
	if d := auth.AuthorizeSQL(`SELECT "email" FROM customers`); len(d.Masked[0]) != 0 {
		t.Fatal("mode applied before the server's OK")
	}
	send(t, s, false, packet(okPacket, 1))
	if d := auth.AuthorizeSQL(`SELECT "email" FROM customers`); len(d.Masked[0]) == 0 {
		t.Fatal("mode not applied after the server's OK")
	}
	send(t, s, true, cmd(comQuery, "SET sql_mode = 'NO_BACKSLASH_ESCAPES'"))
	send(t, s, false, packet(errPayload(1231, "42000", "nope"), 1))
	if d := auth.AuthorizeSQL(`SELECT "email" FROM customers`); len(d.Masked[0]) == 0 {
		t.Fatal("a refused SET changed the mode")
	}
}

// textColumnDef is a utf8mb4 VAR_STRING column definition.
func textColumnDef(name string, seq byte) []byte {
	var b []byte
	for _, s := range []string{"def", "sluice_demo", "customers", "customers", name, name} {
		b = append(appendLenenc(b, uint64(len(s))), s...)
	}
	b = append(b, 0x0c, 45, 0, 0, 1, 0, 0, 253, 0, 0, 0, 0, 0)
	return packet(b, seq)
}

// A prepared statement runs as the server read it when it was prepared:
// changing sql_mode before EXECUTE does not change what it reads.
func TestPreparedStatementKeepsItsReading(t *testing.T) {
	s, _ := readySession(t, "ANSI_QUOTES")
	prepOK := binary.LittleEndian.AppendUint32([]byte{0}, 4)
	prepOK = append(prepOK, 1, 0, 0, 0, 0, 0, 0)
	send(t, s, true, cmd(comStmtPrepare, `SELECT "email" FROM customers`))
	send(t, s, false, append(packet(prepOK, 1), textColumnDef("email", 2)...))
	send(t, s, true, cmd(comQuery, "SET sql_mode = ''"))
	send(t, s, false, packet(okPacket, 1))
	exec := packet(append(binary.LittleEndian.AppendUint32([]byte{comStmtExecute}, 4), 0, 1, 0, 0, 0), 0)
	send(t, s, true, exec)
	if len(s.resp.dec.Masked) == 0 || len(s.resp.dec.Masked[0]) != 1 {
		t.Fatalf("the execute was decided under today's mode: %+v", s.resp.dec.Masked)
	}
}

// The warnings of a statement that read masked values may quote them, and
// the server keeps them through statements that use no table (SET, DO,
// SELECT 1): SHOW WARNINGS stays refused, as a query or prepared, until a
// statement that names a table runs.
func TestShowWarningsAfterMaskedStatementRefused(t *testing.T) {
	s, _ := readySession(t, "")
	refused := func(when string) {
		t.Helper()
		out := send(t, s, true, cmd(comQuery, "SHOW WARNINGS"))
		if len(out.ToServer) != 0 || !bytes.Contains(out.ToClient, []byte("may quote them")) {
			t.Fatalf("SHOW WARNINGS %s: to server %q, client %q", when, out.ToServer, out.ToClient)
		}
	}
	send(t, s, true, cmd(comQuery, "SELECT email+0 FROM customers"))
	send(t, s, false, packet(okPacket, 1))
	refused("after a masked statement")
	for _, q := range []string{"SELECT 1", "SET @x = 1", "DO 1", "SELECT @@warning_count"} {
		send(t, s, true, cmd(comQuery, q))
		send(t, s, false, packet(okPacket, 1))
		refused("after " + q)
	}
	// Prepared, it is refused when executed.
	prepOK := binary.LittleEndian.AppendUint32([]byte{0}, 6)
	prepOK = append(prepOK, 0, 0, 0, 0, 0, 0, 0)
	send(t, s, true, cmd(comStmtPrepare, "SHOW WARNINGS"))
	send(t, s, false, packet(prepOK, 1))
	exec := packet(append(binary.LittleEndian.AppendUint32([]byte{comStmtExecute}, 6), 0, 1, 0, 0, 0), 0)
	if out := send(t, s, true, exec); len(out.ToServer) != 0 || !bytes.Contains(out.ToClient, []byte("may quote them")) {
		t.Fatalf("prepared SHOW WARNINGS executed: %q", out.ToServer)
	}
	send(t, s, true, cmd(comQuery, "SELECT name FROM customers"))
	send(t, s, false, packet(okPacket, 1))
	if out := send(t, s, true, cmd(comQuery, "SHOW WARNINGS")); len(out.ToServer) == 0 {
		t.Fatal("SHOW WARNINGS after a statement that used a table refused")
	}
}

// The server's error about a statement reading masked values is withheld.
func TestErrorsOfMaskedStatementsWithheld(t *testing.T) {
	s, _ := readySession(t, "")
	send(t, s, true, cmd(comQuery, "SELECT CAST(email AS DECIMAL) FROM customers"))
	out := send(t, s, false, packet(errPayload(1292, "22007", "Truncated incorrect DECIMAL value: 'customer1@example.com'"), 1))
	if bytes.Contains(out.ToClient, []byte("customer1")) || !bytes.Contains(out.ToClient, []byte("error 1292")) {
		t.Fatalf("client got %q", out.ToClient)
	}
}

type rowsObserver struct{ rows []int64 }

func (o *rowsObserver) Statement(r session.StatementRecord) { o.rows = append(o.rows, r.Rows) }
func (o *rowsObserver) RecordsResults() bool                { return false }

// The audit counts rows, not the column definition before them.
func TestRecordCountsRows(t *testing.T) {
	s, _ := readySession(t, "")
	obs := &rowsObserver{}
	s.cfg.Observer = obs
	send(t, s, true, cmd(comQuery, "SELECT name FROM customers"))
	row := packet(append(appendLenenc(nil, 10), "Customer 1"...), 3)
	answer := append(append(packet([]byte{1}, 1), textColumnDef("name", 2)...), row...)
	answer = append(answer, packet(append(appendLenenc(nil, 10), "Customer 2"...), 4)...)
	send(t, s, false, append(answer, packet([]byte{0xFE, 0, 0, 2, 0, 0, 0}, 5)...))
	if len(obs.rows) != 1 || obs.rows[0] != 2 {
		t.Fatalf("recorded rows %v, want [2]", obs.rows)
	}
}
