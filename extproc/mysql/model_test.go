package mysql

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// The protocol fuzz target drives a session between a client that sends
// random but well-formed command sequences (pipelined in random writes,
// cut at random points) and a model of MariaDB's command-phase state,
// written from its source (sql_parse.cc, sql_prepare.cc, sql_cursor.cc):
// statement ids handed out by PREPARE_OK, id 0xFFFFFFFF for the statement
// prepared last (cleared by a failed prepare or its close), cursors that
// a re-execute, COM_STMT_RESET or the last row close, COM_RESET_CONNECTION
// dropping statements and returning sql_mode to its global value,
// multi-statement strings read statement by statement under the sql_mode
// the previous one left, SQL-level PREPARE/EXECUTE, a diagnostics area
// kept by statements that use no table, and failures of any command. The
// invariants: nothing sluice refused runs; what the server ran is what
// sluice decided and recorded, command by command; and no real value of a
// masked column reaches the client — not in rows, cursors or warnings.

// The demo's real values: none may reach the analyst.
const (
	realEmail = "customer1@example.com"
	realSSN   = "123-45-6789"
)

var myQueries = []string{
	"SELECT email FROM customers",
	"SELECT name FROM customers",
	`SELECT "email" FROM customers`,
	"DELETE FROM customers",
	"SET sql_mode = 'ANSI_QUOTES'",
	"SET sql_mode = ''",
	"SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
	"/*!40101 SET sql_mode = 'ANSI_QUOTES' */",
	"SELECT name FROM customers; SET sql_mode = 'ANSI_QUOTES'",
	`SET sql_mode = 'ANSI_QUOTES'; SELECT "email" FROM customers`,
	`SELECT name FROM customers; SELECT "email" FROM customers`,
	"PREPARE p FROM 'SELECT email FROM customers'",
	`PREPARE p FROM 'SELECT "email" FROM customers'`,
	"EXECUTE p",
	"DEALLOCATE PREPARE p",
	"SHOW WARNINGS",
	"SELECT ssn, name FROM customers",
	"SELECT CAST(email AS DECIMAL) FROM customers",
	"SELECT 1",
	"SELECT name FROM customers; DELETE FROM customers",
}

var myPrepared = []string{
	"SELECT email FROM customers",
	"SELECT name FROM customers",
	`SELECT "email" FROM customers`,
	"DELETE FROM customers",
	"SET sql_mode = 'ANSI_QUOTES'",
	"SET sql_mode = ''",
	"SELECT ssn, name FROM customers",
	"SHOW WARNINGS",
	"SELECT CAST(email AS DECIMAL) FROM customers",
}

// A statement as the model's server reads it.
type myRead struct {
	kind  string   // select, delete, mode, prepare, execute, deallocate, warnings, setup, bad
	cols  []string // select: what each column returns
	mode  string   // mode: the new sql_mode
	table bool     // select: uses a table
	name  string   // SQL-level prepared statement
	text  string   // prepare: its text
	// secret: a select that reads a real value; its warnings quote it.
	secret bool
}

// read interprets one statement under mode, the way the server lexes it.
func read(sql, mode string) myRead {
	if t, ok := strings.CutPrefix(sql, "/*!40101 "); ok {
		sql = strings.TrimSuffix(t, " */")
	}
	ansi := strings.Contains(mode, "ANSI_QUOTES")
	switch sql {
	case "SELECT email FROM customers":
		return myRead{kind: "select", cols: []string{"email"}, secret: true, table: true}
	case "SELECT name FROM customers":
		return myRead{kind: "select", cols: []string{"name"}, table: true}
	case `SELECT "email" FROM customers`:
		if ansi {
			return myRead{kind: "select", cols: []string{"email"}, secret: true, table: true}
		}
		return myRead{kind: "select", cols: []string{"'email"}, table: true}
	case "SELECT ssn, name FROM customers":
		return myRead{kind: "select", cols: []string{"ssn", "name"}, secret: true, table: true}
	case "SELECT CAST(email AS DECIMAL) FROM customers":
		return myRead{kind: "select", cols: []string{"'0"}, secret: true, table: true}
	case "SELECT 1":
		return myRead{kind: "select", cols: []string{"'1"}}
	case "DELETE FROM customers":
		return myRead{kind: "delete"}
	case "SET sql_mode = 'ANSI_QUOTES'", "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')":
		return myRead{kind: "mode", mode: "ANSI_QUOTES"}
	case "SET sql_mode = ''":
		return myRead{kind: "mode"}
	case "PREPARE p FROM 'SELECT email FROM customers'":
		return myRead{kind: "prepare", name: "p", text: "SELECT email FROM customers"}
	case `PREPARE p FROM 'SELECT "email" FROM customers'`:
		return myRead{kind: "prepare", name: "p", text: `SELECT "email" FROM customers`}
	case "EXECUTE p":
		return myRead{kind: "execute", name: "p"}
	case "DEALLOCATE PREPARE p":
		return myRead{kind: "deallocate", name: "p"}
	case "SHOW WARNINGS":
		return myRead{kind: "warnings"}
	case lexicalQuery:
		return myRead{kind: "setup"}
	}
	return myRead{kind: "bad"}
}

type myStmt struct {
	sql string
	r   myRead // read when prepared
}

type myCursor struct {
	st   myStmt
	left int
}

// myModel is the server side of the command phase.
type myModel struct {
	mode     string
	stmts    map[uint32]myStmt
	nextID   uint32
	last     uint32
	hasLast  bool
	cursors  map[uint32]*myCursor
	sqlStmts map[string]myStmt
	// warning: the diagnostics area quotes a real value.
	warning bool
	// fails: command n fails (a lock timeout, say) if bit n%64 is set.
	fails    uint64
	n        int
	executed []string // per recorded command: text|rows|error
	deleted  bool
	out      []byte
	seq      byte
}

const rowsPerResult = 2

func newMyModel(fails uint64) *myModel {
	return &myModel{stmts: map[uint32]myStmt{}, cursors: map[uint32]*myCursor{}, sqlStmts: map[string]myStmt{}, fails: fails}
}

func (m *myModel) send(payload []byte) {
	m.out, m.seq = appendPacket(m.out, payload, m.seq)
}

func (m *myModel) ok(status uint16) {
	m.send([]byte{0, 0, 0, byte(status), byte(status >> 8), 0, 0})
}

// eof is the OK packet with an 0xFE header that ends rows (CLIENT_DEPRECATE_EOF).
func (m *myModel) eof(status uint16) {
	m.send([]byte{0xFE, 0, 0, byte(status), byte(status >> 8), 0, 0})
}

// err answers an error; the new condition replaces the diagnostics area.
func (m *myModel) err(code uint16, msg string) {
	m.warning = false
	m.send(errPayload(code, "HY000", msg))
}

func (m *myModel) failing() bool {
	m.n++
	return m.fails&(1<<(m.n%64)) != 0
}

// columns are a result set's column count and definitions.
func (m *myModel) columns(cols []string) {
	m.send(appendLenenc(nil, uint64(len(cols))))
	m.defs(cols)
}

func (m *myModel) defs(cols []string) {
	for _, c := range cols {
		name := strings.TrimPrefix(c, "'")
		var b []byte
		for _, s := range []string{"def", "sluice_demo", "customers", "customers", name, name} {
			b = append(appendLenenc(b, uint64(len(s))), s...)
		}
		m.send(append(b, 0x0c, 45, 0, 0, 1, 0, 0, 253, 0, 0, 0, 0, 0))
	}
}

func value(c string) string {
	switch c {
	case "email":
		return realEmail
	case "ssn":
		return realSSN
	case "name":
		return "Customer 1"
	}
	return strings.TrimPrefix(c, "'")
}

func (m *myModel) row(cols []string, binaryRow bool) {
	var b []byte
	if binaryRow {
		b = append([]byte{0}, make([]byte, (len(cols)+9)/8)...)
	}
	for _, c := range cols {
		v := value(c)
		b = append(appendLenenc(b, uint64(len(v))), v...)
	}
	m.send(b)
}

// feed answers every complete command in b and returns the rest.
func (m *myModel) feed(b []byte) []byte {
	for len(b) >= 4 {
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		if len(b) < 4+n {
			return b
		}
		m.seq = 1
		m.command(b[4 : 4+n])
		b = b[4+n:]
	}
	return b
}

func (m *myModel) command(b []byte) {
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case comQuery:
		m.query(string(b[1:]))
	case comStmtPrepare:
		sql := string(b[1:])
		r := read(sql, m.mode)
		if strings.Contains(sql, ";") || r.kind == "bad" || m.failing() {
			m.err(1064, "prepare failed")
			m.hasLast = false // sql_prepare.cc: a failed prepare clears the last statement
			return
		}
		m.nextID++
		id := m.nextID
		m.stmts[id] = myStmt{sql: sql, r: r}
		m.last, m.hasLast = id, true
		ok := binary.LittleEndian.AppendUint32([]byte{0}, id)
		ok = binary.LittleEndian.AppendUint16(ok, uint16(len(r.cols)))
		m.send(append(ok, 0, 0, 0, 0, 0))
		m.defs(r.cols)
	case comStmtExecute:
		id, st, ok := m.stmt(b)
		if !ok {
			m.executed = append(m.executed, "?|0|true")
			m.err(1243, "unknown prepared statement handler")
			return
		}
		delete(m.cursors, id) // a re-execute closes the old cursor
		if m.failing() {
			m.executed = append(m.executed, st.sql+"|0|true")
			m.err(1205, "lock wait timeout")
			return
		}
		r := st.r
		switch r.kind {
		case "select":
			m.select_(r)
			m.columns(r.cols)
			if b[5]&cursorReadOnly != 0 {
				m.cursors[id] = &myCursor{st: st, left: rowsPerResult}
				m.eof(2 | serverCursorExists)
				m.executed = append(m.executed, st.sql+"|0|false")
				return
			}
			for range rowsPerResult {
				m.row(r.cols, true)
			}
			m.eof(2)
			m.executed = append(m.executed, fmt.Sprintf("%s|%d|false", st.sql, rowsPerResult))
		default:
			rows := m.run(r, true)
			m.executed = append(m.executed, fmt.Sprintf("%s|%d|false", st.sql, rows))
		}
	case comStmtFetch:
		id, st, ok := m.stmt(b)
		c := m.cursors[id]
		if !ok || c == nil {
			m.executed = append(m.executed, "?|0|true")
			m.err(1421, "the statement has no open cursor")
			return
		}
		if m.failing() {
			m.executed = append(m.executed, st.sql+"|0|true")
			m.err(1205, "lock wait timeout")
			return
		}
		n := min(int(binary.LittleEndian.Uint32(b[5:])), c.left)
		for range n {
			m.row(c.st.r.cols, true)
		}
		c.left -= n
		status := uint16(2 | serverCursorExists)
		if c.left == 0 {
			status |= serverLastRowSent
			delete(m.cursors, id) // exhausted: the server closes it
		}
		m.eof(status)
		m.executed = append(m.executed, fmt.Sprintf("%s|%d|false", c.st.sql, n))
	case comStmtClose:
		if id, _, ok := m.stmt(b); ok {
			delete(m.stmts, id)
			delete(m.cursors, id)
			if m.hasLast && m.last == id {
				m.hasLast = false
			}
		}
	case comStmtReset:
		id, _, ok := m.stmt(b)
		if !ok {
			m.err(1243, "unknown prepared statement handler")
			return
		}
		delete(m.cursors, id)
		m.ok(2)
	case comResetConnection:
		clear(m.stmts)
		clear(m.cursors)
		clear(m.sqlStmts)
		m.hasLast, m.mode, m.warning = false, "", false
		m.ok(2)
	case comPing:
		m.ok(2)
	case comQuit:
	default:
		m.err(1047, "unknown command")
	}
}

// select_ follows the diagnostics area: a statement that uses a table
// replaces it (sql_parse.cc), one that reads a real value may leave a
// warning quoting it; SELECT 1 keeps what was there.
func (m *myModel) select_(r myRead) {
	if r.table {
		m.warning = r.secret
	}
}

// stmt resolves a COM_STMT_* id, 0xFFFFFFFF being the last prepared.
func (m *myModel) stmt(b []byte) (uint32, myStmt, bool) {
	id := binary.LittleEndian.Uint32(b[1:])
	if id == stmtIDAny {
		if !m.hasLast {
			return 0, myStmt{}, false
		}
		id = m.last
	}
	st, ok := m.stmts[id]
	return id, st, ok
}

// query runs a COM_QUERY, statement by statement, each read under the
// sql_mode the previous one left.
func (m *myModel) query(sql string) {
	parts := strings.Split(sql, "; ")
	if read(sql, m.mode).kind == "setup" {
		m.columns([]string{"'" + m.mode, "'utf8mb4"})
		m.row([]string{"'" + m.mode, "'utf8mb4"}, false)
		m.eof(2)
		return
	}
	fail := m.failing()
	rows := 0
	for i, part := range parts {
		more := uint16(0)
		if i < len(parts)-1 {
			more = serverMoreResults
		}
		r := read(part, m.mode)
		if r.kind == "bad" || fail && i == len(parts)-1 {
			m.err(1064, "statement failed")
			m.executed = append(m.executed, fmt.Sprintf("%s|%d|true", sql, rows))
			return
		}
		rows += m.run(r, false, more)
	}
	m.executed = append(m.executed, fmt.Sprintf("%s|%d|false", sql, rows))
}

// run executes one statement and answers it; it returns the rows sent.
func (m *myModel) run(r myRead, binaryRows bool, more ...uint16) int {
	status := uint16(2)
	if len(more) > 0 {
		status |= more[0]
	}
	switch r.kind {
	case "select":
		m.select_(r)
		m.columns(r.cols)
		for range rowsPerResult {
			m.row(r.cols, binaryRows)
		}
		m.eof(status)
		return rowsPerResult
	case "delete":
		m.deleted, m.warning = true, false
		m.ok(status)
	case "mode":
		m.mode = r.mode
		m.ok(status)
	case "prepare":
		m.sqlStmts[r.name] = myStmt{sql: r.text, r: read(r.text, m.mode)}
		m.ok(status)
	case "execute":
		st, ok := m.sqlStmts[r.name]
		if !ok {
			m.err(1243, "unknown prepared statement")
			return 0
		}
		return m.run(st.r, binaryRows, more...)
	case "deallocate":
		delete(m.sqlStmts, r.name)
		m.ok(status)
	case "warnings":
		cols := []string{"'Warning", "'1292", "'Truncated"}
		if m.warning {
			cols[2] = "email" // the message quotes the real value
		}
		m.columns(cols)
		m.row(cols, binaryRows)
		m.eof(status)
		return 1
	}
	return 0
}

// recorder keeps what sluice reported running, as the model does.
type recorder struct{ ran []string }

func (r *recorder) Statement(rec session.StatementRecord) {
	if rec.Outcome == "allow" {
		r.ran = append(r.ran, fmt.Sprintf("%s|%d|%v", rec.SQL, rec.Rows, rec.Error != ""))
	}
}
func (r *recorder) RecordsResults() bool { return false }

// program decodes the fuzz input into the client's writes of commands.
func program(data []byte) [][][]byte {
	ids := []uint32{1, 2, 3, stmtIDAny}
	withID := func(c byte, arg int, rest ...byte) []byte {
		return append(binary.LittleEndian.AppendUint32([]byte{c}, ids[arg%4]), rest...)
	}
	var writes [][][]byte
	var cur [][]byte
	for i := 0; i+1 < len(data) && len(writes) < 40; i += 2 {
		op, arg := data[i], int(data[i+1])
		switch op % 9 {
		case 0:
			cur = append(cur, append([]byte{comQuery}, myQueries[arg%len(myQueries)]...))
		case 1:
			cur = append(cur, append([]byte{comStmtPrepare}, myPrepared[arg%len(myPrepared)]...))
		case 2:
			cur = append(cur, withID(comStmtExecute, arg, byte(arg>>2)&cursorReadOnly, 1, 0, 0, 0))
		case 3:
			cur = append(cur, binary.LittleEndian.AppendUint32(withID(comStmtFetch, arg), uint32(arg>>2%3+1)))
		case 4:
			cur = append(cur, withID(comStmtClose, arg))
		case 5:
			cur = append(cur, withID(comStmtReset, arg))
		case 6:
			cur = append(cur, []byte{comResetConnection})
		case 7:
			writes, cur = append(writes, cur), nil
		case 8:
			cur = append(cur, []byte{comPing})
		}
	}
	return append(writes, cur)
}

func FuzzSessionProtocol(f *testing.F) {
	f.Add([]byte{0, 0, 7, 0, 0, 2}, uint8(7), uint64(0))
	f.Add([]byte{0, 4, 0, 2, 0, 5, 0, 2}, uint8(3), uint64(0))                    // sql_mode
	f.Add([]byte{1, 0, 2, 0, 2, 3, 1, 1, 2, 7, 7, 0, 3, 7}, uint8(11), uint64(0)) // prepared, id -1
	f.Add([]byte{1, 2, 7, 0, 0, 4, 2, 0, 6, 0, 2, 0}, uint8(5), uint64(0))        // prepared before a mode change, reset
	f.Add([]byte{1, 0, 2, 4, 3, 0, 3, 4, 5, 0, 3, 0}, uint8(2), uint64(0))        // cursors
	f.Add([]byte{1, 0, 1, 1, 2, 3, 4, 3, 2, 3}, uint8(9), uint64(0b100))          // a failed prepare, a close of the last
	f.Add([]byte{0, 17, 0, 18, 0, 15, 1, 7, 2, 1}, uint8(4), uint64(0))           // warnings
	f.Add([]byte{0, 11, 0, 4, 0, 13, 0, 12, 0, 13, 0, 14, 0, 13}, uint8(6), uint64(0))
	set, err := cedar.Default()
	if err != nil {
		f.Fatal(err)
	}
	engine := policy.NewEngine(set)
	engine.SetCatalog("demo-mysql", staticCatalog{demoCatalog})
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, fails uint64) {
		s, model, rec, toClient := runModel(t, engine, data, chunk, fails)
		if model.deleted {
			t.Fatal("the server ran a DELETE sluice must refuse")
		}
		for _, v := range []string{realEmail, realSSN} {
			if bytes.Contains(toClient, []byte(v)) {
				t.Fatalf("a real value reached the client: %q", v)
			}
		}
		if s.phase != phaseClosed && fmt.Sprint(model.executed) != fmt.Sprint(rec.ran) {
			t.Fatalf("the server ran\n%q\nsluice decided\n%q", model.executed, rec.ran)
		}
	})
}

// runModel plays the program in data between a session and the model.
func runModel(t *testing.T, engine *policy.Engine, data []byte, chunk uint8, fails uint64) (*Session, *myModel, *recorder, []byte) {
	target := session.Target{Name: "demo-mysql", Protocol: "mysql", Database: "sluice_demo"}
	rec := &recorder{}
	s := NewSession(Config{Target: target, Authorizer: engine.Session(session.Identity{Subject: "a", Groups: []string{"analysts"}}, target), Observer: rec})
	model := newMyModel(fails)
	var toServer, toClient, pending []byte
	var out session.Output
	size := int(chunk)%23 + 1
	pump := func() {
		for round := 0; round < 50 && s.phase != phaseClosed; round++ {
			pending = model.feed(append(pending, toServer...))
			toServer = toServer[:0]
			resp := model.out
			model.out = nil
			if len(resp) == 0 {
				return
			}
			for i := 0; i < len(resp); i += size {
				out.Reset()
				_ = s.FromServer(resp[i:min(i+size, len(resp))], &out)
				toServer = append(toServer, out.ToServer...)
				toClient = append(toClient, out.ToClient...)
			}
		}
	}
	// Login: the greeting, the client's handshake (multi-statements
	// on), the server's OK; sluice's setup is answered by the model.
	hs := clientHandshake("agent", "sluice_demo")
	binary.LittleEndian.PutUint32(hs[4:], binary.LittleEndian.Uint32(hs[4:])|capMultiStatements|1<<17)
	for i, b := range [][]byte{greetingPacket(pluginNative), hs, packet(okPacket, 2)} {
		out.Reset()
		if i == 1 {
			_ = s.FromClient(b, &out)
		} else {
			_ = s.FromServer(b, &out)
		}
		if i == 2 {
			toServer = append(toServer, out.ToServer...)
		}
	}
	pump()
	if s.phase != phaseCommand || len(s.setup) != 0 {
		t.Fatal("session not ready")
	}
	for _, write := range program(data) {
		var b []byte
		for _, c := range write {
			b = append(b, packet(c, 0)...)
		}
		for i := 0; i < len(b); i += size {
			out.Reset()
			_ = s.FromClient(b[i:min(i+size, len(b))], &out)
			toServer = append(toServer, out.ToServer...)
			toClient = append(toClient, out.ToClient...)
		}
		pump()
		if s.phase == phaseClosed {
			break
		}
	}
	return s, model, rec, toClient
}
