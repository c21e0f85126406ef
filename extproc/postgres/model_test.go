package postgres

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
)

// The protocol fuzz target drives a session between a client that sends
// random but well-formed message sequences (random names, orders, syncs,
// chunkings) and a model of the PostgreSQL server's extended-protocol
// state — unnamed and named statements and portals, skip to Sync after an
// error, portals ending with their transaction, Parse and Bind failures —
// written from the server's source (postgres.c, portalmem.c). The
// invariants: every statement the server executes was decided by sluice,
// with the same text; nothing sluice refused runs; and no real value of a
// masked column reaches the client.

// realEmail is what the model returns for a masked column.
const realEmail = "customer1@example.com"

// modelSQL are the statements the client may send, for an analyst: masked
// reads, plain reads, a refused write, one the server fails at Parse, and
// SQL that changes the session's named objects.
var modelSQL = []string{
	"SELECT email FROM customers",
	"SELECT name FROM customers",
	"DELETE FROM customers",
	"SELECT email + 1 FROM customers", // the server fails it at Parse
	"SELECT ssn, name FROM customers",
}

var modelQueries = []string{
	"SELECT email FROM customers",
	"SELECT name FROM customers",
	"DELETE FROM customers",
	"PREPARE a AS SELECT email FROM customers",
	"DEALLOCATE a",
	"DEALLOCATE ALL",
	"BEGIN",
	"COMMIT",
	"ROLLBACK",
	"DECLARE c CURSOR WITH HOLD FOR SELECT email FROM customers",
	"FETCH 1 FROM c",
	"CLOSE c",
	"CLOSE ALL",
}

// pgModel is the server side.
type pgModel struct {
	stmts    map[string]string // named and unnamed ("") statements
	portals  map[string]string // portal → the SQL it runs
	inBlock  bool              // BEGIN … COMMIT
	failed   bool              // the block failed
	skipping bool              // after an extended-protocol error, until Sync
	executed []string          // what ran, in order
	out      []byte
}

func newPGModel() *pgModel {
	return &pgModel{stmts: map[string]string{}, portals: map[string]string{}}
}

func (m *pgModel) send(msgs ...pgproto3.BackendMessage) {
	for _, msg := range msgs {
		m.out, _ = msg.Encode(m.out)
	}
}

func (m *pgModel) fail(code string) {
	m.send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: "model error " + code})
	if m.inBlock {
		m.failed = true
	}
}

// rows answers the row a statement returns, as the real data would be;
// asked is the text the client asked for (what sluice should have decided).
func (m *pgModel) rows(asked, sql string) {
	m.executed = append(m.executed, asked)
	var row [][]byte
	for _, c := range columns(sql) {
		v := "Customer 1"
		if c == "email" || c == "ssn" {
			v = realEmail
		}
		row = append(row, []byte(v))
	}
	m.send(&pgproto3.DataRow{Values: row})
}

// columns are the select list of a model statement.
func columns(sql string) []string {
	list := sql[strings.Index(sql, "SELECT")+len("SELECT") : strings.Index(sql, " FROM")]
	var out []string
	for _, c := range strings.Split(list, ",") {
		out = append(out, strings.TrimSpace(c))
	}
	return out
}

func (m *pgModel) rowDescription(sql string) {
	var rd pgproto3.RowDescription
	for _, c := range columns(sql) {
		rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25})
	}
	m.send(&rd)
}

// endTx ends an implicit transaction (Sync, or the end of a simple query):
// outside a block, portals other than holdable cursors are gone.
func (m *pgModel) endTx() {
	if m.inBlock {
		return
	}
	for k := range m.portals {
		if !strings.HasPrefix(k, "c") {
			delete(m.portals, k)
		}
	}
}

func (m *pgModel) status() byte {
	switch {
	case m.failed:
		return 'E'
	case m.inBlock:
		return 'T'
	}
	return 'I'
}

// feed processes every complete message in b and returns the rest.
func (m *pgModel) feed(b []byte) []byte {
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5])) + 1
		if len(b) < n {
			return b
		}
		m.message(b[0], b[5:n])
		b = b[n:]
	}
	return b
}

func (m *pgModel) message(typ byte, body []byte) {
	if typ == 'S' {
		m.skipping = false
		m.endTx()
		m.send(&pgproto3.ReadyForQuery{TxStatus: m.status()})
		return
	}
	if m.skipping || typ == 'X' || typ == 'H' {
		return
	}
	switch typ {
	case 'Q':
		var q pgproto3.Query
		_ = q.Decode(body)
		m.query(q.String)
		m.endTx()
		m.send(&pgproto3.ReadyForQuery{TxStatus: m.status()})
		return
	case 'P':
		var p pgproto3.Parse
		_ = p.Decode(body)
		if p.Name == "" {
			delete(m.stmts, "") // dropped before parsing
		}
		switch {
		case m.failed, strings.Contains(p.Query, "+ 1"):
			m.extError("42883")
		case p.Name != "" && m.stmts[p.Name] != "":
			m.extError("42P05")
		default:
			m.stmts[p.Name] = p.Query
			m.send(&pgproto3.ParseComplete{})
		}
	case 'B':
		var b pgproto3.Bind
		_ = b.Decode(body)
		sql, ok := m.stmts[b.PreparedStatement]
		switch {
		case !ok || m.failed:
			m.extError("26000")
		case b.DestinationPortal != "" && m.portals[b.DestinationPortal] != "":
			m.extError("42P03")
		default:
			m.portals[b.DestinationPortal] = sql
			m.send(&pgproto3.BindComplete{})
		}
	case 'D':
		var d pgproto3.Describe
		_ = d.Decode(body)
		var sql string
		var ok bool
		if d.ObjectType == 'S' {
			if sql, ok = m.stmts[d.Name]; !ok {
				m.extError("26000")
				return
			}
			m.send(&pgproto3.ParameterDescription{})
		} else if sql, ok = m.portals[d.Name]; !ok {
			m.extError("34000")
			return
		}
		m.rowDescription(sql)
	case 'E':
		var e pgproto3.Execute
		_ = e.Decode(body)
		sql, ok := m.portals[e.Portal]
		if !ok || m.failed {
			m.extError("34000")
			return
		}
		m.rows(sql, sql)
		m.send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	case 'C':
		var c pgproto3.Close
		_ = c.Decode(body)
		if c.ObjectType == 'S' {
			delete(m.stmts, c.Name)
		} else {
			delete(m.portals, c.Name)
		}
		m.send(&pgproto3.CloseComplete{})
	}
}

// extError is an error in an extended-protocol message: skip to Sync; in
// an implicit transaction the abort drops every portal.
func (m *pgModel) extError(code string) {
	m.fail(code)
	m.skipping = true
	if !m.inBlock {
		m.portals = map[string]string{}
	}
}

// query runs a simple query of one statement.
func (m *pgModel) query(sql string) {
	delete(m.stmts, "")
	if m.failed && sql != "ROLLBACK" && sql != "COMMIT" {
		m.fail("25P02")
		return
	}
	tag := "SELECT 1"
	switch {
	case sql == "BEGIN":
		m.inBlock, tag = true, "BEGIN"
	case sql == "COMMIT" || sql == "ROLLBACK":
		tag = "COMMIT"
		if m.failed || sql == "ROLLBACK" {
			tag = "ROLLBACK"
			for k := range m.portals {
				delete(m.portals, k) // conservatively: cursors of the block
			}
		}
		m.inBlock, m.failed = false, false
	case strings.HasPrefix(sql, "PREPARE a"):
		if m.stmts["a"] != "" {
			m.fail("42P05")
			return
		}
		m.stmts["a"], tag = "SELECT email FROM customers", "PREPARE"
	case sql == "DEALLOCATE a":
		if m.stmts["a"] == "" {
			m.fail("26000")
			return
		}
		delete(m.stmts, "a")
		tag = "DEALLOCATE"
	case sql == "DEALLOCATE ALL":
		for k := range m.stmts {
			if k != "" {
				delete(m.stmts, k)
			}
		}
		tag = "DEALLOCATE ALL"
	case strings.HasPrefix(sql, "DECLARE c"):
		if m.portals["c"] != "" {
			m.fail("42P03")
			return
		}
		m.portals["c"], tag = sql, "DECLARE CURSOR"
	case sql == "FETCH 1 FROM c":
		c, ok := m.portals["c"]
		if !ok {
			m.fail("34000")
			return
		}
		m.rowDescription(c)
		m.rows(sql, c)
		tag = "FETCH 1"
	case sql == "CLOSE c":
		if _, ok := m.portals["c"]; !ok {
			m.fail("34000")
			return
		}
		delete(m.portals, "c")
		tag = "CLOSE CURSOR"
	case sql == "CLOSE ALL":
		m.portals, tag = map[string]string{}, "CLOSE CURSOR ALL"
	case strings.HasPrefix(sql, "DELETE"):
		m.executed = append(m.executed, sql)
		tag = "DELETE 50"
	default:
		m.rowDescription(sql)
		m.rows(sql, sql)
	}
	m.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// recorder keeps the statements sluice reported as decided and run.
type recorder struct{ ran []string }

func (r *recorder) Statement(rec session.StatementRecord) {
	if rec.Outcome == "allow" && rec.Error == "" && rec.Rows > 0 {
		r.ran = append(r.ran, rec.SQL)
	}
}
func (r *recorder) RecordsResults() bool { return false }

// program decodes the fuzz input into client messages, in batches.
func program(data []byte) [][]pgproto3.FrontendMessage {
	names := []string{"", "a", "b"}
	var batches [][]pgproto3.FrontendMessage
	var cur []pgproto3.FrontendMessage
	for i := 0; i+1 < len(data) && len(batches) < 40; i += 2 {
		op, arg := data[i], int(data[i+1])
		switch op % 10 {
		case 0:
			cur = append(cur, &pgproto3.Parse{Name: names[arg%3], Query: modelSQL[arg/3%len(modelSQL)]})
		case 1:
			cur = append(cur, &pgproto3.Bind{DestinationPortal: names[arg%2], PreparedStatement: names[arg/2%3]})
		case 2:
			cur = append(cur, &pgproto3.Describe{ObjectType: 'P', Name: names[arg%2]})
		case 3:
			cur = append(cur, &pgproto3.Execute{Portal: []string{"", "a", "c"}[arg%3]})
		case 4:
			cur = append(cur, &pgproto3.Close{ObjectType: "SP"[arg%2], Name: names[arg/2%3]})
		case 5, 6:
			cur = append(cur, &pgproto3.Sync{})
			batches, cur = append(batches, cur), nil
		case 7:
			cur = append(cur, &pgproto3.Query{String: modelQueries[arg%len(modelQueries)]})
		case 8:
			cur = append(cur, &pgproto3.Describe{ObjectType: 'S', Name: names[arg%3]})
		case 9:
			batches, cur = append(batches, cur), nil // a write boundary
		}
	}
	return append(batches, append(cur, &pgproto3.Sync{}))
}

func FuzzSessionProtocol(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 2, 0, 3, 0, 5, 0}, uint8(7))
	f.Add([]byte{0, 3, 5, 0, 0, 4, 5, 0, 1, 2, 2, 0, 3, 0, 5, 0}, uint8(3))        // a failed Parse of a used name
	f.Add([]byte{0, 0, 1, 0, 2, 0, 0, 3, 3, 0, 5, 0}, uint8(11))                   // re-parse before Execute
	f.Add([]byte{7, 3, 1, 2, 3, 0, 5, 0, 7, 4, 7, 3, 1, 2, 5, 0}, uint8(1))        // PREPARE, DEALLOCATE
	f.Add([]byte{7, 9, 7, 10, 3, 2, 5, 0, 7, 11, 7, 10}, uint8(5))                 // cursors
	f.Add([]byte{0, 1, 9, 0, 5, 0, 1, 2, 3, 0, 5, 0, 0, 10, 4, 1, 5, 0}, uint8(2)) // across batches
	f.Add([]byte{7, 6, 0, 0, 1, 0, 5, 0, 3, 0, 5, 0, 7, 7, 3, 0, 5, 0}, uint8(9))  // a block
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		s := maskingSession(t)
		rec := &recorder{}
		s.cfg.Observer = rec
		model := newPGModel()
		var toServer, toClient, pending []byte
		var out session.Output
		size := int(chunk)%17 + 1
		pump := func() {
			// Server answers, fed to sluice in chunks, until quiet.
			for round := 0; round < 50; round++ {
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
				if s.phase == phaseClosed {
					return
				}
			}
		}
		for _, batch := range program(data) {
			var b []byte
			for _, m := range batch {
				b, _ = m.Encode(b)
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
		if bytes.Contains(toClient, []byte(realEmail)) {
			t.Fatalf("a real value reached the client")
		}
		for _, sql := range model.executed {
			if strings.HasPrefix(sql, "DELETE") {
				t.Fatalf("the server ran a refused statement: %s", sql)
			}
		}
		// What the server ran is what sluice decided and recorded, in order.
		if s.phase != phaseClosed && fmt.Sprint(model.executed) != fmt.Sprint(rec.ran) {
			t.Fatalf("the server ran %q\nsluice decided %q", model.executed, rec.ran)
		}
	})
}
