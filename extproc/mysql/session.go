package mysql

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// Authorizer decides statements for one session. The session tells it
// what decides how SQL reads, as the server confirms it: the default
// database (USE, COM_INIT_DB), the sql_mode, the server's version.
type Authorizer interface {
	AuthorizeSQL(sql string) policy.Decision
	// AuthorizeSQLIn decides sql as the server read it under env (a
	// prepared statement, in the database and sql_mode it was prepared in).
	AuthorizeSQLIn(env policy.MySQLSession, sql string) policy.Decision
	Env() policy.MySQLSession
	SetDatabase(db string)
	SetSQLMode(m policy.SQLMode)
	SetServer(version int, mariadb bool)
}

// DefaultMaxPacket bounds a command or a masked row sluice joins in memory.
const DefaultMaxPacket = 128 << 20

// Capability flags sluice changes or reads.
const (
	capConnectWithDB    = 1 << 3
	capCompress         = 1 << 5
	capLocalFiles       = 1 << 7
	capProtocol41       = 1 << 9
	capSSL              = 1 << 11
	capSecureConn       = 1 << 15
	capMultiStatements  = 1 << 16
	capPluginAuth       = 1 << 19
	capLenencAuthData   = 1 << 21
	capDeprecateEOF     = 1 << 24
	capQueryAttributes  = 1 << 27
	serverMoreResults   = 0x0008
	serverCursorExists  = 0x0040
	serverLastRowSent   = 0x0080
	clearedCapabilities = capCompress | capLocalFiles | capSSL | capQueryAttributes
)

type phase int

const (
	phaseGreeting  phase = iota // the server speaks first
	phaseHandshake              // awaiting the client's handshake response
	phaseAuth                   // authentication exchange until OK or ERR
	phaseCommand
	phaseClosed
)

// Config is what a session needs besides the bytes.
type Config struct {
	Target     session.Target
	Authorizer Authorizer
	Logger     *slog.Logger
	Masker     *mask.Masker
	MaxPacket  int
	// Approvals holds statements whose outcome is "approval" for a human;
	// nil refuses them.
	Approvals session.Approvals
	// Observer receives a record per statement (audit); may be nil.
	Observer session.Observer
}

// Session is the MySQL client/server protocol state machine of one tunnel.
type Session struct {
	cfg    Config
	log    *slog.Logger
	client framer
	server framer
	cmd    joiner
	row    joiner
	phase  phase

	login        *brokeredLogin // nil: the client authenticates itself
	authTurn     bool           // the server waits for one client authentication packet
	caps         uint32         // the client's capabilities, as forwarded
	deprecateEOF bool

	// resp is the answer to the command in flight. Commands are decided
	// and sent one at a time: one the client pipelines behind another
	// waits in backlog until the server has answered the first, so every
	// decision is made on state the server confirmed.
	resp    response
	stmts   map[uint32]prepared // prepared statement id → SQL, from PREPARE_OK
	cursors map[uint32]*cursor  // statement id → its open cursor
	// lastStmt is the statement MariaDB runs for id 0xFFFFFFFF (the last
	// one prepared), when there is one.
	lastStmt    uint32
	hasLastStmt bool
	stats       map[string]int
	detect      bool

	// held is the command waiting for a human; later client packets wait
	// in backlog until it is decided.
	held    *heldCmd
	backlog []phys
	admit   string // SQL a human approved: its next decision counts as allowed

	mariadb bool // the greeting's version names MariaDB
	// setup: sluice's own commands are in flight (after login, after
	// COM_RESET_CONNECTION); client packets wait in backlog until they are
	// answered.
	setup     []setupStep
	setupRead setupReader
	// resetPending: the server confirmed COM_RESET_CONNECTION; sluice's
	// setup runs again before the next command.
	resetPending bool
	// warningsProtected: the last statement read values the agent sees
	// only masked; SHOW WARNINGS / SHOW ERRORS could quote them.
	warningsProtected bool
}

// prepared is a statement the server prepared: its text, and the session
// state it was read under then (the server runs that reading, whatever
// the database or sql_mode is when it is executed).
type prepared struct {
	sql string
	env policy.MySQLSession
}

// cursor is a statement's open cursor (COM_STMT_EXECUTE with a cursor
// flag): COM_STMT_FETCH returns its rows, masked with the execute's plan.
type cursor struct {
	sql  string
	dec  policy.Decision
	cols []column
	plan map[int]*mask.Rule
	rows int64 // fetched so far (guardrails)
}

// NewSession starts a session awaiting the server's greeting.
func NewSession(cfg Config) *Session {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxPacket <= 0 {
		cfg.MaxPacket = DefaultMaxPacket
	}
	if cfg.Masker == nil {
		cfg.Masker = mask.New(nil)
	}
	return &Session{
		cfg: cfg, log: cfg.Logger,
		cmd:     joiner{max: cfg.MaxPacket},
		row:     joiner{max: cfg.MaxPacket},
		stmts:   map[uint32]prepared{},
		cursors: map[uint32]*cursor{},
		stats:   map[string]int{},
		detect:  cfg.Target.Tags["detectors"] == "on",
	}
}

// ProtocolError is a malformed or forbidden packet; the session is over.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "mysql protocol: " + e.Msg }

// FromClient implements session.Session.
func (s *Session) FromClient(data []byte, out *session.Output) error {
	if s.phase == phaseClosed {
		return nil
	}
	return s.fail(s.client.feed(data, func(p phys) error { return s.clientPacket(p, out) }), out)
}

// FromServer implements session.Session.
func (s *Session) FromServer(data []byte, out *session.Output) error {
	if s.phase == phaseClosed {
		return nil
	}
	return s.fail(s.server.feed(data, func(p phys) error { return s.serverPacket(p, out) }), out)
}

// fail ends the session: the client gets an error and the server a packet
// that makes it hang up.
func (s *Session) fail(err error, out *session.Output) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var pe *ProtocolError
	if errors.As(err, &pe) {
		msg = pe.Msg
	}
	s.log.Warn("mysql session refused", "err", err)
	out.ToClient, _ = appendPacket(out.ToClient, errPayload(1045, "08S01", "sluice: "+msg), s.nextClientSeq())
	if s.phase == phaseCommand {
		out.ToServer, _ = appendPacket(out.ToServer, []byte{0x01}, 0) // COM_QUIT
	} else {
		out.ToServer, _ = appendPacket(out.ToServer, []byte{0}, 1) // a malformed handshake
	}
	s.phase = phaseClosed
	return err
}

func (s *Session) nextClientSeq() byte {
	if s.phase == phaseCommand {
		return 1
	}
	return 2
}

// errPayload builds an ERR packet.
func errPayload(code uint16, state, msg string) []byte {
	b := []byte{0xFF}
	b = binary.LittleEndian.AppendUint16(b, code)
	b = append(b, '#')
	b = append(b, state...)
	return append(b, msg...)
}

func (s *Session) clientPacket(p phys, out *session.Output) error {
	switch s.phase {
	case phaseGreeting:
		return &ProtocolError{"the client spoke before the server's greeting"}
	case phaseHandshake:
		if p.more || p.cont {
			return &ProtocolError{"oversized handshake response"}
		}
		return s.handshakeResponse(p, out)
	case phaseAuth:
		if s.login != nil {
			return &ProtocolError{"sluice logs in to the database for the agent: the client sends no password"}
		}
		if !s.authTurn {
			// Anything else here would reach the server unchecked once
			// authentication succeeds.
			return &ProtocolError{"unexpected client packet during authentication"}
		}
		s.authTurn = p.more
		out.ToServer = append(out.ToServer, p.raw...)
		return nil
	}
	if s.blocked() {
		s.backlog = append(s.backlog, p.clone())
		return nil
	}
	if !p.cont && p.seq != 0 {
		return &ProtocolError{fmt.Sprintf("unexpected client packet with sequence id %d", p.seq)}
	}
	done, err := s.cmd.add(p)
	if err != nil {
		return &ProtocolError{err.Error()}
	}
	if !done {
		return nil
	}
	return s.command(s.cmd.payload, out)
}

func (s *Session) handshakeResponse(p phys, out *session.Output) error {
	h, err := parseHandshake(p.payload)
	if err != nil {
		return err
	}
	caps := h.caps
	if caps&capSSL != 0 {
		return &ProtocolError{"TLS must not start inside the tunnel (it would hide the session from the gateway): connect without TLS to the local connector"}
	}
	if caps&capProtocol41 == 0 {
		return &ProtocolError{"clients older than protocol 4.1 are not supported"}
	}
	caps &^= clearedCapabilities
	s.caps = caps
	db := h.db
	if want := s.cfg.Target.Database; want != "" && db != "" && db != want {
		return &ProtocolError{fmt.Sprintf("target %q serves database %q, not %q", s.cfg.Target.Name, want, db)}
	}
	if db == "" {
		db = s.cfg.Target.Database
	}
	s.cfg.Authorizer.SetDatabase(db)
	s.phase = phaseAuth
	if s.login != nil {
		b, err := s.login.brokeredResponse(h, caps)
		if err != nil {
			return err
		}
		s.login.clientSeq = p.seq + 1
		s.log = s.log.With("db_user", s.login.login.User, "client_user", h.user, "database", db)
		out.ToServer, _ = appendPacket(out.ToServer, b, p.seq)
		out.Sensitive = true
		return nil
	}
	s.log = s.log.With("db_user", h.user, "database", db)
	nb := append([]byte(nil), p.payload...)
	binary.LittleEndian.PutUint32(nb, caps)
	copy(nb[28:32], []byte{0, 0, 0, 0}) // MariaDB extended capabilities: none
	out.ToServer, _ = appendPacket(out.ToServer, nb, p.seq)
	return nil
}

func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// Command bytes.
const (
	comQuit            = 0x01
	comInitDB          = 0x02
	comQuery           = 0x03
	comFieldList       = 0x04
	comStatistics      = 0x09
	comPing            = 0x0e
	comStmtPrepare     = 0x16
	comStmtExecute     = 0x17
	comStmtSendLong    = 0x18
	comStmtClose       = 0x19
	comStmtReset       = 0x1a
	comSetOption       = 0x1b
	comStmtFetch       = 0x1c
	comResetConnection = 0x1f
)

// stmtIDAny is the statement id that makes MariaDB use the statement
// prepared last (mariadb_stmt_execute_direct pipelines PREPARE and EXECUTE).
const stmtIDAny = 0xFFFFFFFF

// Cursor flags of COM_STMT_EXECUTE.
const cursorReadOnly = 0x01

func (s *Session) command(b []byte, out *session.Output) error {
	if len(b) == 0 {
		return &ProtocolError{"empty command"}
	}
	s.resp = response{}
	forward := func(r response) {
		s.resp = r
		out.ToServer, _ = appendPacket(out.ToServer, b, 0)
	}
	switch b[0] {
	case comQuery:
		sql := string(b[1:])
		d := s.warnings(s.authorize(sql))
		if d.Outcome == policy.Approval {
			var ok bool
			if d, ok = s.approval(d, sql, b, out); !ok {
				return nil
			}
		}
		if !d.Allowed() {
			s.refuse(d, sql, out)
			return nil
		}
		s.diagnostics(d)
		forward(response{kind: respResult, dec: d, rec: s.record(sql, d)})
	case comStmtPrepare:
		sql := string(b[1:])
		// Preparing runs nothing: a statement needing approval is held when
		// it is executed.
		if d := s.authorize(sql); !d.Allowed() && d.Outcome != policy.Approval {
			s.refuse(d, sql, out)
			return nil
		}
		forward(response{kind: respPrepare, sql: sql, env: s.cfg.Authorizer.Env()})
	case comStmtExecute:
		if len(b) < 10 {
			return &ProtocolError{"malformed COM_STMT_EXECUTE"}
		}
		id, st, ok := s.statement(b)
		if !ok {
			s.refuse(policy.Decision{Reason: fmt.Sprintf("statement %d is not one sluice saw prepared in this session: refused", binary.LittleEndian.Uint32(b[1:]))}, "", out)
			return nil
		}
		sql := st.sql
		d := s.warnings(s.cfg.Authorizer.AuthorizeSQLIn(st.env, sql))
		if d.Shadow {
			s.log.Warn("shadow mode: statement would be refused", "sql", sql, "would_be", d.WouldBe.String(), "reason", d.Reason)
		}
		if d.Outcome == policy.Approval {
			var ok bool
			if d, ok = s.approval(d, sql, b, out); !ok {
				return nil
			}
		}
		if !d.Allowed() {
			s.refuse(d, sql, out)
			return nil
		}
		// The server's old cursor on the statement closes when it runs again.
		delete(s.cursors, id)
		s.diagnostics(d)
		forward(response{kind: respResult, dec: d, binary: true, sql: sql, stmtID: id, cursor: b[5]&cursorReadOnly != 0, rec: s.record(sql, d)})
	case comStmtFetch:
		if len(b) < 9 {
			return &ProtocolError{"malformed COM_STMT_FETCH"}
		}
		id, _, ok := s.statement(b)
		c := s.cursors[id]
		if !ok || c == nil {
			s.refuse(policy.Decision{Reason: fmt.Sprintf("statement %d has no cursor sluice saw opened: refused", binary.LittleEndian.Uint32(b[1:]))}, "", out)
			return nil
		}
		s.diagnostics(c.dec)
		forward(response{kind: respResult, dec: c.dec, binary: true, stmtID: id, fetch: c, state: stRows,
			cols: c.cols, plan: c.plan, rows: c.rows, rec: s.record(c.sql, c.dec)})
	case comInitDB:
		db := string(b[1:])
		sql := "USE `" + strings.ReplaceAll(db, "`", "``") + "`"
		d := s.authorize(sql)
		if !d.Allowed() {
			s.refuse(d, sql, out)
			return nil
		}
		forward(response{kind: respResult, dec: d})
	case comStmtClose:
		// No answer: the server drops the statement (and its cursor) now.
		if id, _, ok := s.statement(b); ok {
			delete(s.stmts, id)
			delete(s.cursors, id)
			if s.hasLastStmt && s.lastStmt == id {
				s.hasLastStmt = false
			}
		}
		forward(response{kind: respNone})
	case comStmtSendLong:
		s.statement(b) // the id made concrete; the data changes no decision
		forward(response{kind: respNone})
	case comStmtReset:
		id, _, _ := s.statement(b)
		forward(response{kind: respSingle, stmtID: id, resetStmt: true})
	case comResetConnection:
		forward(response{kind: respSingle, resetConn: true})
	case comQuit:
		forward(response{kind: respNone})
	case comPing, comStatistics, comSetOption:
		forward(response{kind: respSingle})
	default:
		// COM_CHANGE_USER would switch identity under the gateway; binlog and
		// replica commands stream the whole database; COM_FIELD_LIST,
		// COM_PROCESS_KILL and the rest are administrative or obsolete.
		s.refuse(policy.Decision{Reason: fmt.Sprintf("command 0x%02x is not allowed through the gateway", b[0])}, "", out)
	}
	return nil
}

// statement resolves the statement id of a COM_STMT_* command (in b[1:5])
// to one the server confirmed preparing. MariaDB's "last prepared" id is
// rewritten in b to the concrete id, so the server runs exactly the
// statement decided.
func (s *Session) statement(b []byte) (uint32, prepared, bool) {
	if len(b) < 5 {
		return 0, prepared{}, false
	}
	id := binary.LittleEndian.Uint32(b[1:])
	if id == stmtIDAny && s.mariadb {
		if !s.hasLastStmt {
			return 0, prepared{}, false
		}
		id = s.lastStmt
		binary.LittleEndian.PutUint32(b[1:], id)
	}
	st, ok := s.stmts[id]
	return id, st, ok
}

// diagnostics follows whether the server's diagnostics area (SHOW
// WARNINGS, SHOW ERRORS) may quote values the agent sees only masked. The
// server clears it only for a statement that uses tables or raises a
// condition of its own (sql_parse.cc): a SET, a DO or a SELECT 1 keeps the
// old one. So once a statement read protected values, its warnings stay
// protected until a query or write that names a table (and reads nothing
// protected) runs; other statements — PREPARE, SHOW, CALL, … — leave the
// flag as it is, whatever tables they name.
func (s *Session) diagnostics(d policy.Decision) {
	switch {
	case d.Protected:
		s.warningsProtected = true
	case len(d.Tables) > 0 && len(d.Kinds) > 0 && !slices.ContainsFunc(d.Kinds, func(k string) bool { return !clearsDiagnostics[k] }):
		s.warningsProtected = false
	}
}

// clearsDiagnostics are the statement kinds that, naming a table, make the
// server clear its diagnostics area when they run.
var clearsDiagnostics = map[string]bool{"select": true, "insert": true, "update": true, "delete": true, "replace": true}

// warnings refuses SHOW WARNINGS / SHOW ERRORS, sent as a query or
// executed as a prepared statement, while the diagnostics area may quote
// masked values.
func (s *Session) warnings(d policy.Decision) policy.Decision {
	if slices.Contains(d.Kinds, "show_warnings") && (d.Protected || s.warningsProtected) {
		return policy.Decision{Outcome: policy.Deny, Reason: "SHOW WARNINGS / SHOW ERRORS after a statement that read masked values is refused: its messages may quote them", Kinds: d.Kinds}
	}
	return d
}

// blocked: client packets wait in backlog — a statement held for a human,
// sluice's own setup in flight, or the answer to the command before.
func (s *Session) blocked() bool {
	return s.held != nil || len(s.setup) > 0 || s.resp.awaiting()
}

func (s *Session) authorize(sql string) policy.Decision {
	d := s.cfg.Authorizer.AuthorizeSQL(sql)
	if d.Shadow {
		s.log.Warn("shadow mode: statement would be refused", "sql", sql, "would_be", d.WouldBe.String(), "reason", d.Reason)
	}
	return d
}

// refuse answers a command with an ERR packet; the command never reaches
// the server, and the client and server stay in step (the next command
// starts a new sequence on both sides).
func (s *Session) refuse(d policy.Decision, sql string, out *session.Output) {
	code, state := uint16(1142), "42000"
	msg := "sluice: " + d.Reason
	switch {
	case d.Missing != nil && d.Outcome == policy.Deny:
		// As MySQL says it (ER_NO_SUCH_TABLE): tools branch on 1146.
		code, state = 1146, "42S02"
		msg = fmt.Sprintf("Table '%s.%s' doesn't exist", d.Missing.Schema, d.Missing.Name)
		d.Policies = nil
	case d.Unparseable:
		code = 1064
	case d.Outcome == policy.Approval:
		msg += " (approval required; no approval service is configured, so it is refused)"
	}
	if len(d.Policies) > 0 {
		msg += " [policies: " + d.PolicyList() + "]"
	}
	out.ToClient, _ = appendPacket(out.ToClient, errPayload(code, state, msg), 1)
	s.resp = response{kind: respNone}
	if r := s.record(sql, d); r != nil {
		r.End, r.Error = time.Now(), msg
		s.cfg.Observer.Statement(*r)
	}
	s.log.Info("statement refused", "sql", sql, "outcome", d.Outcome.String(), "reason", d.Reason, "policies", d.Policies)
}

// Close reports the session's masking counts.
func (s *Session) Close() {
	if len(s.stats) > 0 {
		s.log.Info("values masked", "counts", fmt.Sprint(s.stats))
	}
}

// Expire ends the session: an ERR to the client, COM_QUIT to the server.
func (s *Session) Expire(reason string, out *session.Output) {
	if s.phase == phaseClosed {
		return
	}
	out.ToClient, _ = appendPacket(out.ToClient, errPayload(1045, "28000", "sluice: "+reason), 0)
	if s.phase == phaseCommand {
		out.ToServer, _ = appendPacket(out.ToServer, []byte{comQuit}, 0)
	} else {
		out.ToServer, _ = appendPacket(out.ToServer, []byte{0}, 1)
	}
	s.phase = phaseClosed
}

// record starts a statement's record, when someone observes them.
func (s *Session) record(sql string, d policy.Decision) *session.StatementRecord {
	if s.cfg.Observer == nil {
		return nil
	}
	return d.Record(sql)
}

// replayBacklog processes the client packets that waited.
func (s *Session) replayBacklog(out *session.Output) error {
	for len(s.backlog) > 0 && !s.blocked() {
		q := s.backlog[0]
		s.backlog = s.backlog[1:]
		if len(s.backlog) == 0 {
			s.backlog = nil
		}
		if err := s.clientPacket(q, out); err != nil {
			return err
		}
	}
	return nil
}
