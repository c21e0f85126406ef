package e2e

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/devstack"
)

// Class 2: protocol state that would move before the server confirms it.
// Each attack is a hand-built message sequence through the real Envoy;
// what the client receives must be masked or refused, and the databases'
// logs show what they ran.

// rawPG is a PostgreSQL connection driven message by message.
type rawPG struct {
	t  *testing.T
	pc *pgconn.PgConn
}

func dialRawPG(t *testing.T) *rawPG {
	t.Helper()
	pc, err := pgconn.Connect(context.Background(), stack.AgentURL(ownerConnect(t, devstack.DemoTarget, "attacker", []string{"analysts"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(context.Background()) })
	return &rawPG{t: t, pc: pc}
}

// run sends msgs in one write and collects what comes back through the
// ReadyForQuery answering the last Sync or Query (syncs of them counted).
func (r *rawPG) run(syncs int, msgs ...pgproto3.FrontendMessage) string {
	r.t.Helper()
	fe := r.pc.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out strings.Builder
	for syncs > 0 {
		m, err := r.pc.ReceiveMessage(ctx)
		if err != nil {
			r.t.Fatalf("receive: %v (so far %s)", err, out.String())
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			for _, v := range m.Values {
				out.WriteString(string(v) + "|")
			}
			out.WriteString("\n")
		case *pgproto3.ErrorResponse:
			out.WriteString("ERROR " + m.Code + " " + m.Message + "\n")
		case *pgproto3.ReadyForQuery:
			syncs--
		}
	}
	return out.String()
}

func TestAttackPostgresProtocolState(t *testing.T) {
	log := dbLog(t)
	email := &pgproto3.Parse{Name: "s1", Query: "SELECT email, ssn FROM customers WHERE id = 1"}
	for _, tc := range []struct {
		name  string
		syncs int
		msgs  []pgproto3.FrontendMessage
		want  string // in the output: a refusal or a mask
	}{
		{"a failed Parse of a used name keeps the statement the server has", 3, []pgproto3.FrontendMessage{
			email, &pgproto3.Sync{},
			&pgproto3.Parse{Name: "s1", Query: "SELECT name, name FROM customers WHERE id = 1"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "***"},
		{"re-parsing the unnamed statement keeps the bound portal's plan", 1, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT email FROM customers WHERE id = 1"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Parse{Query: "SELECT 'x'::text"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "***"},
		{"a statement made by SQL PREPARE is refused through Bind", 2, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "PREPARE p1 AS SELECT email FROM customers"},
			&pgproto3.Bind{PreparedStatement: "p1"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "ERROR 42501"},
		{"DEALLOCATE and PREPARE swap a name's text", 3, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s2", Query: "SELECT name FROM customers WHERE id = 1"}, &pgproto3.Sync{},
			&pgproto3.Query{String: "DEALLOCATE s2; PREPARE s2 AS SELECT email FROM customers WHERE id = 1"},
			&pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "ERROR 42501"},
		{"a statement never prepared", 1, []pgproto3.FrontendMessage{
			&pgproto3.Bind{PreparedStatement: "nowhere"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "ERROR 26000 prepared statement \"nowhere\" does not exist"},
		{"a portal never bound", 1, []pgproto3.FrontendMessage{
			&pgproto3.Execute{Portal: "nowhere"}, &pgproto3.Sync{}}, "ERROR 34000 portal \"nowhere\" does not exist"},
		{"a cursor's rows through protocol Execute", 2, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "DECLARE c1 CURSOR WITH HOLD FOR SELECT email FROM customers WHERE id = 1"},
			&pgproto3.Describe{ObjectType: 'P', Name: "c1"}, &pgproto3.Execute{Portal: "c1"}, &pgproto3.Sync{}}, "***"},
		{"a cursor's rows through FETCH", 1, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "BEGIN; DECLARE c2 CURSOR FOR SELECT ssn FROM customers WHERE id = 1; FETCH ALL FROM c2; COMMIT"}}, "***"},
		{"FETCH from a cursor sluice never saw", 1, []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "FETCH ALL FROM nowhere"}}, "ERROR 42501"},
		{"a Close skipped after an error keeps the statement", 3, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s3", Query: "SELECT email FROM customers WHERE id = 1"}, &pgproto3.Sync{},
			&pgproto3.Parse{Name: "bad", Query: "SELECT nosuch FROM customers"}, &pgproto3.Close{ObjectType: 'S', Name: "s3"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s3"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "***"},
		{"a Bind across batches waits for the Parse's outcome", 2, []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s4", Query: "SELECT email + 1 FROM customers"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s4"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, "ERROR 26000 prepared statement \"s4\" does not exist"},
	} {
		r := dialRawPG(t)
		out := r.run(tc.syncs, tc.msgs...)
		if realValue(out) || !strings.Contains(out, tc.want) {
			t.Errorf("%s:\n%s", tc.name, out)
		}
	}
	pgLog, _ := log()
	// Never prepared nor bound by the server's word: nothing of these ran.
	notRun(t, pgLog, "execute p1", "execute s2")
}

func TestAttackMySQLProtocolState(t *testing.T) {
	addr := ownerConnect(t, mysqlTarget, "attacker", []string{"analysts"})
	before := myCount(t, "SELECT count(*) FROM orders")
	log := dbLog(t)

	// Pipelined: both answers come back, each masked by its own plan.
	m := dialRawMySQL(t, addr)
	m.send(comQuery("SELECT email FROM customers WHERE id = 1"), comQuery("SELECT 'plain'"), comQuery("SELECT ssn FROM customers WHERE id = 1"))
	if out := m.drain(); realValue(out) || !strings.Contains(out, "plain") || strings.Count(out, "***") < 2 {
		t.Errorf("pipelined queries: %q", out)
	}
	// An id guessed before PREPARE_OK, an id never prepared.
	m = dialRawMySQL(t, addr)
	last, _ := m.prepare("SELECT 1")
	m.send(comPrepare("SELECT email FROM customers WHERE id = 1"), comExecute(last+1, 0), comExecute(last+77, 0))
	out := m.drain()
	if realValue(out) || !strings.Contains(out, "not one sluice saw prepared") {
		t.Errorf("execute of a guessed and an unknown id: %q", out)
	}
	// MariaDB's "last prepared" id after a prepare sluice refused runs the
	// statement sluice decided before it, never the refused one.
	m = dialRawMySQL(t, addr)
	m.send(comPrepare("SELECT name FROM customers WHERE id = 1"))
	m.drain()
	m.send(comPrepare(smuggled), comExecute(0xFFFFFFFF, 0))
	if out := m.drain(); !strings.Contains(out, "Customer 1") || !strings.Contains(out, "DELETE on table sluice_demo.orders refused") {
		t.Errorf("execute -1 after a refused prepare: %q", out)
	}
	// A cursor: its fetched rows are masked; a fetch without one refused.
	m = dialRawMySQL(t, addr)
	id, prep := m.prepare("SELECT id, email, ssn FROM customers ORDER BY id LIMIT 3")
	if !strings.Contains(prep, "email") {
		t.Fatalf("prepare: %q", prep)
	}
	m.send(comFetch(id, 5))
	if out := m.drain(); !strings.Contains(out, "no cursor sluice saw opened") {
		t.Errorf("fetch without a cursor: %q", out)
	}
	m.send(comExecute(id, 0x01)) // CURSOR_TYPE_READ_ONLY
	m.drain()
	m.send(comFetch(id, 5))
	if out := m.drain(); realValue(out) || !strings.Contains(out, "***") {
		t.Errorf("fetched rows: %q", out)
	}
	// COM_STMT_RESET closes the cursor: a fetch after it is refused.
	m.send(binary.LittleEndian.AppendUint32([]byte{0x1a}, id))
	m.drain()
	m.send(comFetch(id, 5))
	if out := m.drain(); !strings.Contains(out, "no cursor sluice saw opened") {
		t.Errorf("fetch after COM_STMT_RESET: %q", out)
	}
	// A parameter sent as long data: the statement is still the one
	// decided, and masked.
	m = dialRawMySQL(t, addr)
	id, _ = m.prepare("SELECT email FROM customers WHERE name = ?")
	m.send(append(binary.LittleEndian.AppendUint32([]byte{0x18}, id), append([]byte{0, 0}, "Customer 1"...)...)) // no answer
	exec := append(binary.LittleEndian.AppendUint32([]byte{0x17}, id), 0, 1, 0, 0, 0, 0, 1, 0xfd, 0)             // null bitmap, bound, VAR_STRING
	m.send(exec)
	if out := m.drain(); realValue(out) || !strings.Contains(out, "***") {
		t.Errorf("execute with long data: %q", out)
	}
	// Several commands in one write, the second a DELETE: refused in
	// place, the first and third answered.
	m = dialRawMySQL(t, addr)
	m.send(comQuery("SELECT 1"), comQuery(smuggled), comQuery("SELECT 2"))
	if out := m.drain(); !strings.Contains(out, "DELETE on table sluice_demo.orders refused") || !strings.Contains(out, "\x012") {
		t.Errorf("pipelined DELETE: %q", out)
	}
	_, myLog := log()
	notRun(t, myLog, smuggled)
	if after := myCount(t, "SELECT count(*) FROM orders"); after != before {
		t.Fatalf("orders went from %d to %d", before, after)
	}
}

// The server's diagnostics area outlives the statement that filled it: a
// SET, DO or SELECT without a table keeps it, so the warnings of a
// statement that read masked values (which quote them) stay out of reach
// — as SHOW WARNINGS / SHOW ERRORS, sent or prepared — until a statement
// that names a table replaces them.
func TestAttackMySQLDiagnosticsArea(t *testing.T) {
	const leak = "SELECT CAST(email AS DECIMAL) FROM customers WHERE id = 1"
	// The owner's own session shows why: the warning quotes the value.
	root, err := stack.Maria.Root(devstack.DemoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	conn, err := root.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{leak, "SELECT 1", "DO 1"} {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	var level, code, msg string
	if err := conn.QueryRowContext(context.Background(), "SHOW WARNINGS").Scan(&level, &code, &msg); err != nil || !realValue(msg) {
		t.Fatalf("the database no longer keeps the warning (%q, %v): this attack tests nothing", msg, err)
	}

	m := dialRawMySQL(t, ownerConnect(t, mysqlTarget, "attacker", []string{"analysts"}))
	m.send(comQuery(leak))
	if out := m.drain(); realValue(out) {
		t.Fatalf("the masked statement: %q", out)
	}
	for _, keep := range []string{"SELECT 1", "SET @x = 1", "DO 1", "SELECT @@warning_count"} {
		m.send(comQuery(keep), comQuery("SHOW WARNINGS"), comQuery("SHOW ERRORS"))
		if out := m.drain(); realValue(out) || strings.Count(out, "may quote them") != 2 {
			t.Errorf("SHOW WARNINGS after %s: %q", keep, out)
		}
	}
	id, _ := m.prepare("SHOW WARNINGS")
	m.send(comExecute(id, 0), comExecute(0xFFFFFFFF, 0))
	if out := m.drain(); realValue(out) || strings.Count(out, "may quote them") != 2 {
		t.Errorf("prepared SHOW WARNINGS: %q", out)
	}
	m.send(comQuery("GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT"), comQuery("SELECT @m"))
	if out := m.drain(); realValue(out) {
		t.Errorf("GET DIAGNOSTICS: %q", out)
	}
	// A statement that names a table replaces the area: SHOW WARNINGS runs.
	m.send(comQuery("SELECT name FROM customers WHERE id = 1"), comQuery("SHOW WARNINGS"))
	if out := m.drain(); strings.Contains(out, "may quote them") || !strings.Contains(out, "Level") {
		t.Errorf("SHOW WARNINGS after a statement that used a table: %q", out)
	}
}
