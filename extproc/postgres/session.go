package postgres

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// Authorizer decides statements for one session's principal and target.
type Authorizer interface {
	AuthorizeSQL(sql string) policy.Decision
}

// DefaultMaxFrame is the largest message buffered whole (queries, Bind
// parameters, server messages other than DataRow and CopyData).
const DefaultMaxFrame = 128 << 20

// Startup codes of the untyped first messages.
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
)

type phase int

const (
	phaseStartup phase = iota // awaiting SSLRequest, GSSENCRequest, StartupMessage or CancelRequest
	phaseAuth                 // StartupMessage forwarded; authentication until the first ReadyForQuery
	phaseReady                // normal operation
	phaseCancel               // a CancelRequest connection: nothing more is expected
	phaseClosed               // refused or broken: everything further is dropped
)

// opKind is a client message that the server answers.
type opKind int

const (
	opQuery opKind = iota // simple query: answered up to ReadyForQuery
	opFunctionCall
	opSync
	opParse
	opBind
	opDescribeStatement
	opDescribePortal
	opExecute
	opClose
)

func (k opKind) endsAtReadyForQuery() bool {
	return k == opQuery || k == opFunctionCall || k == opSync
}

// op is one client message awaiting the server's answer. The ops form a FIFO
// that mirrors the server's processing order, so sluice knows which message
// every server response belongs to and can put its own responses in place.
type op struct {
	kind opKind
	name string           // Describe: the statement or portal described
	dec  *policy.Decision // Query: the decision, for its masking plan
	stmt int              // Query: index of the statement now answering
	plan *rowPlan         // Execute: how to rewrite its rows
	// denial, when set, replaces the server's error for this op: sluice sent
	// the server a harmless message that fails in place of the refused one.
	denial *pgproto3.ErrorResponse
	// rec is the statement's record, reported when the op completes; tap
	// records the rows the client received.
	rec *session.StatementRecord
	tap *rowTap
	// rows and bytes of the result so far (guardrails); cut: the result
	// went past them, the client got an error, the rest of this op's
	// answer is dropped.
	rows, bytes int64
	cut         bool
}

// Config is what a session needs besides the bytes.
type Config struct {
	Target     session.Target
	Authorizer Authorizer
	Logger     *slog.Logger
	MaxFrame   int // 0 means DefaultMaxFrame
	// Masker rewrites masked values; nil masks everything by redaction.
	Masker *mask.Masker
	// Approvals holds statements whose outcome is "approval" for a human;
	// nil refuses them.
	Approvals session.Approvals
	// Observer receives a record per statement (audit); may be nil.
	Observer session.Observer
}

// Session is the PostgreSQL v3 protocol state machine of one tunnel.
type Session struct {
	cfg    Config
	log    *slog.Logger
	client framer
	server framer
	phase  phase

	ops        []op
	stmts      map[string]string   // prepared statement name → SQL text
	portals    map[string]portal   // portal name → its statement and formats
	stmtTypes  map[string][]uint32 // result column types per prepared statement
	portalType map[string][]uint32 // result column types per described portal
	cur        *rowPlan            // simple protocol: the result being returned
	scratchRow pgproto3.DataRow    // decoded recorded rows (see rowTap)
	stats      maskStats
	detect     bool
	login      *brokeredLogin // nil: the client authenticates itself
	recordRows bool           // the observer keeps the rows the client received

	// held is the statement waiting for a human; the client's later
	// messages wait in backlog, in order, until it is decided.
	held    *heldStmt
	backlog []frame
	// admit is SQL a human approved: its next decision counts as allowed.
	admit string

	// cutPending: a result was cut; if the client is in a transaction
	// block, the server's transaction must fail too (see limitRows).
	cutPending bool

	// poisonName names a prepared statement that cannot exist; describing it
	// makes the server fail in place of a refused message, so the server
	// itself aborts the transaction and skips to Sync as PostgreSQL would.
	poisonName string
}

// NewSession starts a session in the startup phase.
func NewSession(cfg Config) *Session {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	if cfg.Masker == nil {
		cfg.Masker = mask.New(nil)
	}
	s := &Session{
		cfg:        cfg,
		log:        cfg.Logger,
		stmts:      map[string]string{},
		portals:    map[string]portal{},
		stmtTypes:  map[string][]uint32{},
		portalType: map[string][]uint32{},
		stats:      maskStats{},
		detect:     cfg.Target.Tags["detectors"] == "on",
		poisonName: "sluice: refused " + hex.EncodeToString(nonce[:]),
		recordRows: cfg.Observer != nil && cfg.Observer.RecordsResults(),
	}
	s.client = framer{startup: true, maxFrame: cfg.MaxFrame, opaque: clientOpaque}
	s.server = framer{maxFrame: cfg.MaxFrame, opaque: s.serverOpaque}
	return s
}

type portal struct {
	stmt    string
	formats []int16 // Bind's result format codes
}

func clientOpaque(typ byte) bool { return typ == 'd' } // CopyData

// serverOpaque streams rows and copy data through unbuffered, unless the
// result they belong to is being masked: then each row is buffered whole.
func (s *Session) serverOpaque(typ byte) bool {
	if typ != 'D' && typ != 'd' {
		return false
	}
	return !s.plan().active()
}

// plan is the row plan of the result now arriving.
func (s *Session) plan() *rowPlan {
	if len(s.ops) > 0 && s.ops[0].kind == opExecute {
		return s.ops[0].plan
	}
	return s.cur
}

// ProtocolError is a malformed or forbidden message; the session is over.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "postgres protocol: " + e.Msg }

// FromClient implements session.Session.
func (s *Session) FromClient(data []byte, out *session.Output) error {
	if s.phase == phaseClosed {
		return nil
	}
	err := s.client.feed(data, func(f frame) error { return s.clientFrame(f, out) })
	return s.fail(err, out)
}

// FromServer implements session.Session.
func (s *Session) FromServer(data []byte, out *session.Output) error {
	if s.phase == phaseClosed {
		return nil
	}
	err := s.server.feed(data, func(f frame) error { return s.serverFrame(f, out) })
	return s.fail(err, out)
}

// fail ends a session on a protocol error: the client gets a FATAL error and
// the server a Terminate (or, before startup, a void cancel that makes it hang up).
func (s *Session) fail(err error, out *session.Output) error {
	if err == nil {
		return nil
	}
	var pe *ProtocolError
	msg := err.Error()
	if errors.As(err, &pe) {
		msg = pe.Msg
	}
	s.log.Warn("postgres session refused", "err", err)
	out.ToClient = s.appendError(out.ToClient, &pgproto3.ErrorResponse{
		Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01",
		Message: "sluice: " + msg,
	})
	out.ToServer = s.appendHangup(out.ToServer)
	s.phase = phaseClosed
	return err
}

// appendHangup makes the server close the connection without doing anything.
func (s *Session) appendHangup(dst []byte) []byte {
	if s.phase == phaseStartup {
		// A cancel request with a key no backend has: the server closes quietly.
		dst = binary.BigEndian.AppendUint32(dst, 16)
		dst = binary.BigEndian.AppendUint32(dst, codeCancelRequest)
		return binary.BigEndian.AppendUint64(dst, 0)
	}
	return append(dst, 'X', 0, 0, 0, 4)
}

func (s *Session) clientFrame(f frame, out *session.Output) error {
	switch s.phase {
	case phaseStartup:
		return s.startupFrame(f, out)
	case phaseAuth:
		// Only authentication responses may precede the first ReadyForQuery:
		// anything else would reach the server unchecked once it is ready.
		if f.typ != 'p' {
			return &ProtocolError{fmt.Sprintf("unexpected message %q during authentication", f.typ)}
		}
		if s.login != nil {
			return &ProtocolError{"sluice logs in to the database for the agent: the client sends no password"}
		}
		out.ToServer = append(out.ToServer, f.raw...)
		return nil
	case phaseReady:
		if s.held != nil {
			s.backlog = append(s.backlog, f.clone())
			return nil
		}
		return s.readyFrame(f, out)
	default:
		return nil
	}
}

func (s *Session) startupFrame(f frame, out *session.Output) error {
	code := binary.BigEndian.Uint32(f.body)
	switch code {
	case codeSSLRequest, codeGSSENCRequest:
		// TLS or GSS encryption must never start inside the tunnel, where
		// sluice would be blind. PostgreSQL clients then go on in plaintext.
		out.ToClient = append(out.ToClient, 'N')
		return nil
	case codeCancelRequest:
		if len(f.body) != 12 {
			return &ProtocolError{"malformed cancel request"}
		}
		s.log.Info("cancel request forwarded", "pid", binary.BigEndian.Uint32(f.body[4:]))
		out.ToServer = append(out.ToServer, f.raw...)
		s.phase = phaseCancel
		return nil
	}
	var sm pgproto3.StartupMessage
	if err := sm.Decode(f.body); err != nil {
		return &ProtocolError{fmt.Sprintf("cannot decode startup message: %v", err)}
	}
	if err := s.checkStartup(sm.Parameters); err != nil {
		return err
	}
	s.client.startup = false
	timeout := s.cfg.Target.Guardrails.StatementTimeout
	if timeout > 0 {
		// Set at startup, it is also what RESET returns to.
		sm.Parameters["statement_timeout"] = fmt.Sprintf("%dms", max(1, timeout.Milliseconds()))
	}
	if l := s.cfg.Target.Login; l != nil {
		var err error
		if out.ToServer, err = startupWithLogin(&sm, l, out.ToServer); err != nil {
			return &ProtocolError{fmt.Sprintf("cannot rewrite startup message: %v", err)}
		}
		s.login = &brokeredLogin{login: l}
		s.log = s.log.With("db_user", l.User, "client_user", sm.Parameters["user"], "database", sm.Parameters["database"])
		s.phase = phaseAuth
		return nil
	}
	s.log = s.log.With("db_user", sm.Parameters["user"], "database", sm.Parameters["database"])
	if timeout > 0 {
		var err error
		if out.ToServer, err = sm.Encode(out.ToServer); err != nil {
			return &ProtocolError{fmt.Sprintf("cannot rewrite startup message: %v", err)}
		}
	} else {
		out.ToServer = append(out.ToServer, f.raw...)
	}
	s.phase = phaseAuth
	return nil
}

// allowedStartupParams are the startup parameters a client may set. Others
// (options, replication, role, search_path, …) would change the session's
// authority or name resolution before sluice sees a statement.
var allowedStartupParams = map[string]bool{
	"user": true, "database": true, "application_name": true, "client_encoding": true,
	"datestyle": true, "timezone": true, "extra_float_digits": true, "intervalstyle": true,
}

func (s *Session) checkStartup(params map[string]string) error {
	for k := range params {
		if !allowedStartupParams[strings.ToLower(k)] {
			return &ProtocolError{fmt.Sprintf("startup parameter %q is not allowed through the gateway", k)}
		}
	}
	db := params["database"]
	if db == "" {
		db = params["user"]
	}
	if want := s.cfg.Target.Database; want != "" && db != want {
		return &ProtocolError{fmt.Sprintf("target %q serves database %q, not %q", s.cfg.Target.Name, want, db)}
	}
	return nil
}

func (s *Session) readyFrame(f frame, out *session.Output) error {
	var ok bool
	if f.piece {
		out.ToServer = append(out.ToServer, f.raw...) // CopyData
		return nil
	}
	switch f.typ {
	case 'Q':
		var m pgproto3.Query
		if err := decode("Query", &m, f.body); err != nil {
			return err
		}
		d := s.authorize(m.String)
		if d.Outcome == policy.Approval {
			if d, ok = s.approval(d, m.String, f, true, out); !ok {
				return nil
			}
		}
		if !d.Allowed() {
			s.refuseSimple(d, m.String, out)
			return nil
		}
		s.ops = append(s.ops, op{kind: opQuery, dec: &d, rec: s.record(m.String, d)})
	case 'P':
		var m pgproto3.Parse
		if err := decode("Parse", &m, f.body); err != nil {
			return err
		}
		// Parsing runs nothing, so only SQL that cannot be understood is
		// refused here; policy is enforced at Bind, where execution begins,
		// matching where PostgreSQL reports permission errors.
		if d := s.authorize(m.Query); d.Unparseable {
			s.refuseExtended(d, m.Query, out)
			return nil
		}
		s.stmts[m.Name] = m.Query
		s.push(opParse, nil)
	case 'B':
		var m pgproto3.Bind
		if err := decode("Bind", &m, f.body); err != nil {
			return err
		}
		sql, ok := s.stmts[m.PreparedStatement]
		if !ok {
			// Unknown to sluice means unknown to the server too; let it say so.
			s.push(opBind, nil)
			break
		}
		d := s.authorize(sql)
		if d.Outcome == policy.Approval {
			if d, ok = s.approval(d, sql, f, false, out); !ok {
				return nil
			}
		}
		if !d.Allowed() {
			s.refuseExtended(d, sql, out)
			return nil
		}
		s.portals[m.DestinationPortal] = portal{stmt: m.PreparedStatement, formats: m.ResultFormatCodes}
		delete(s.portalType, m.DestinationPortal)
		s.push(opBind, nil)
	case 'D':
		var m pgproto3.Describe
		if err := decode("Describe", &m, f.body); err != nil {
			return err
		}
		k := opDescribePortal
		if m.ObjectType == 'S' {
			k = opDescribeStatement
		}
		s.ops = append(s.ops, op{kind: k, name: m.Name})
	case 'E':
		var m pgproto3.Execute
		if err := decode("Execute", &m, f.body); err != nil {
			return err
		}
		plan, rec := s.executePlan(m.Portal)
		s.ops = append(s.ops, op{kind: opExecute, plan: plan, rec: rec})
	case 'C':
		var m pgproto3.Close
		if err := decode("Close", &m, f.body); err != nil {
			return err
		}
		if m.ObjectType == 'S' {
			delete(s.stmts, m.Name)
		} else {
			delete(s.portals, m.Name)
		}
		s.push(opClose, nil)
	case 'S':
		s.push(opSync, nil)
	case 'F':
		// The fast-path interface calls any function by OID (lo_import,
		// pg_read_file, …) and bypasses SQL analysis: always refused.
		s.refuseSimple(policy.Decision{Reason: "the fast-path function call interface is not allowed"}, "", out)
		return nil
	case 'H', 'c', 'f', 'd', 'X':
		// Flush, CopyDone, CopyFail, CopyData, Terminate: no answer of their own.
	default:
		return &ProtocolError{fmt.Sprintf("unexpected client message %q", f.typ)}
	}
	out.ToServer = append(out.ToServer, f.raw...)
	return nil
}

func decode(name string, m interface{ Decode([]byte) error }, body []byte) error {
	if err := m.Decode(body); err != nil {
		return &ProtocolError{fmt.Sprintf("malformed %s: %v", name, err)}
	}
	return nil
}

// executePlan is the row plan for executing a portal — the masking plan of
// its statement, the column types the server described, and Bind's formats —
// and the statement's record.
func (s *Session) executePlan(name string) (*rowPlan, *session.StatementRecord) {
	p, ok := s.portals[name]
	if !ok {
		return nil, nil
	}
	sql := s.stmts[p.stmt]
	d := s.authorize(sql) // memoized
	var masked []policy.MaskedColumn
	if len(d.Masked) > 0 {
		masked = d.Masked[0]
	}
	plan := newRowPlan(masked, s.detect)
	types, ok := s.portalType[name]
	if !ok {
		types = s.stmtTypes[p.stmt]
	}
	plan.types = types
	plan.formats = resultFormats(p.formats, len(types))
	return plan, s.record(sql, d)
}

func (s *Session) push(k opKind, denial *pgproto3.ErrorResponse) {
	s.ops = append(s.ops, op{kind: k, denial: denial})
}

// refuseSimple answers a refused simple Query (or FunctionCall): the server is
// sent a failing Describe and a Sync, which yield ErrorResponse and
// ReadyForQuery exactly where the query's response would have been, with the
// transaction aborted as a failed statement would leave it.
func (s *Session) refuseSimple(d policy.Decision, sql string, out *session.Output) {
	out.ToServer = s.appendPoison(out.ToServer)
	out.ToServer = append(out.ToServer, 'S', 0, 0, 0, 4)
	s.push(opSync, denialError(d))
	s.ops[len(s.ops)-1].rec = s.record(sql, d)
	s.logRefusal(d, sql)
}

// refuseExtended answers a refused Parse or Bind in the extended protocol: the
// failing Describe makes the server report an error there and skip every
// message until Sync, as it would had the statement failed itself.
func (s *Session) refuseExtended(d policy.Decision, sql string, out *session.Output) {
	out.ToServer = s.appendPoison(out.ToServer)
	s.push(opDescribeStatement, denialError(d))
	s.ops[len(s.ops)-1].rec = s.record(sql, d)
	s.logRefusal(d, sql)
}

func (s *Session) logRefusal(d policy.Decision, sql string) {
	s.log.Info("statement refused", "sql", sql, "outcome", d.Outcome.String(), "reason", d.Reason, "policies", d.Policies)
}

// authorize decides sql and logs what shadow mode lets through.
func (s *Session) authorize(sql string) policy.Decision {
	d := s.cfg.Authorizer.AuthorizeSQL(sql)
	if d.Shadow {
		s.log.Warn("shadow mode: statement would be refused", "sql", sql, "would_be", d.WouldBe.String(), "reason", d.Reason, "policies", d.Policies)
	}
	return d
}

func (s *Session) appendPoison(dst []byte) []byte {
	m := pgproto3.Describe{ObjectType: 'S', Name: s.poisonName}
	dst, _ = m.Encode(dst)
	return dst
}

func denialError(d policy.Decision) *pgproto3.ErrorResponse {
	e := &pgproto3.ErrorResponse{
		Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501",
		Message: "sluice: " + d.Reason,
		Detail:  "policies: " + d.PolicyList(),
	}
	switch {
	case d.Unparseable:
		e.Code = "42601"
		e.Detail = ""
	case d.Outcome == policy.Approval:
		// Held statements wait for a human once approvals are configured;
		// until then they are refused, saying what would let them run.
		e.Message += " (approval required; no approval service is configured, so it is refused)"
	}
	return e
}

func (s *Session) serverFrame(f frame, out *session.Output) error {
	if f.piece {
		if (f.typ == 'D' || f.typ == 'd') && s.phase == phaseReady && s.limitRows(f, out) {
			return nil
		}
		out.ToClient = append(out.ToClient, f.raw...) // DataRow or CopyData
		if f.typ == 'D' && s.phase == phaseReady {
			if tap := s.tapFor(); tap != nil {
				tap.feed(f.raw)
			}
		}
		return nil
	}
	switch s.phase {
	case phaseAuth:
		switch f.typ {
		case 'R':
			if s.login != nil {
				forward, err := s.login.serverAuth(f.body, out)
				if err != nil || !forward {
					return err
				}
			}
		case 'E':
			if s.login != nil {
				s.log.Warn("the database refused sluice's login", "db_user", s.login.login.User)
			}
		case 'Z':
			if len(f.body) != 1 {
				return &ProtocolError{"malformed ReadyForQuery from the server"}
			}
			s.phase = phaseReady
		case 'K':
			var m pgproto3.BackendKeyData
			if err := m.Decode(f.body); err == nil {
				s.log = s.log.With("backend_pid", m.ProcessID)
			}
		}
		out.ToClient = append(out.ToClient, f.raw...)
		return nil
	case phaseReady:
		return s.readyServerFrame(f, out)
	default:
		out.ToClient = append(out.ToClient, f.raw...)
		return nil
	}
}

func (s *Session) readyServerFrame(f frame, out *session.Output) error {
	switch f.typ {
	case 'N', 'A', 'S':
		// Notices, notifications and parameter changes come at any time.
		out.ToClient = append(out.ToClient, f.raw...)
		return nil
	case 'D', 'd':
		// Rows and copy data belong to the op at the head.
		if s.limitRows(f, out) {
			return nil
		}
		start := len(out.ToClient)
		var err error
		p := s.plan()
		switch {
		case !p.active():
			out.ToClient = append(out.ToClient, f.raw...)
		case f.typ == 'd':
			out.ToClient = s.rewriteCopyRow(out.ToClient, f.body, p)
		default:
			out.ToClient, err = s.rewriteDataRow(out.ToClient, f.body, p)
		}
		if f.typ == 'D' && err == nil {
			if tap := s.tapFor(); tap != nil {
				tap.feed(out.ToClient[start:]) // as the client sees it
			}
		}
		return err
	}
	if len(s.ops) == 0 {
		// e.g. a FATAL error on shutdown.
		out.ToClient = append(out.ToClient, f.raw...)
		return nil
	}
	head := &s.ops[0]
	if head.cut && f.typ != 'Z' {
		s.dropCut(head, f)
		return nil
	}
	if head.denial != nil {
		if f.typ != 'E' {
			// The failing Describe succeeded: nothing refused was forwarded,
			// but the client and server are out of step. Fail closed.
			return &ProtocolError{fmt.Sprintf("server answered %q to a refused statement's placeholder", f.typ)}
		}
		out.ToClient = s.appendError(out.ToClient, head.denial)
		if head.rec != nil {
			head.rec.Error = head.denial.Message
		}
		head.denial = nil
		s.afterError()
		return nil
	}
	if f.typ == 'Z' && s.cutPending && len(f.body) == 1 {
		s.cutPending = false
		if f.body[0] == 'T' && s.abortAfterCut(out) {
			return nil // the ReadyForQuery of the aborting statement goes instead
		}
	}
	out.ToClient = append(out.ToClient, f.raw...)
	if head.rec != nil {
		observe(head.rec, f)
	}
	switch f.typ {
	case 'E':
		s.cur = nil
		s.afterError()
		return nil
	case 'Z':
		if len(f.body) != 1 {
			return &ProtocolError{"malformed ReadyForQuery from the server"}
		}
		s.cur = nil
		s.popThroughReady()
		return nil
	case 'T':
		s.rowDescription(head, f.body)
		if tap := s.tapFor(); tap != nil {
			tap.columns(f.body)
		}
	case 'H':
		// COPY TO: text rows, no type information; masked fields stay text.
		if p := s.copyPlan(head); p != nil {
			if head.kind == opExecute {
				head.plan = p
			} else {
				s.cur = p
			}
		}
	case 'C', 'I':
		if head.kind == opQuery {
			head.stmt++
			head.rows, head.bytes = 0, 0
			s.cur = nil
		}
	}
	if completes(head.kind, f.typ) {
		s.pop()
	}
	return nil
}

// afterError applies PostgreSQL's rule: an error in an extended-protocol
// message discards every message up to the next Sync.
func (s *Session) afterError() {
	if s.ops[0].kind.endsAtReadyForQuery() {
		return // ends at its ReadyForQuery
	}
	for len(s.ops) > 0 && s.ops[0].kind != opSync {
		s.pop()
	}
}

// popThroughReady pops through the op a ReadyForQuery answers; anything
// before it was skipped.
func (s *Session) popThroughReady() {
	for len(s.ops) > 0 {
		k := s.ops[0].kind
		s.pop()
		if k.endsAtReadyForQuery() {
			return
		}
	}
}

func (s *Session) pop() {
	if r := s.ops[0].rec; r != nil && s.cfg.Observer != nil {
		r.End = time.Now()
		r.Result = s.ops[0].tap.result()
		s.cfg.Observer.Statement(*r)
	}
	s.ops[0] = op{}
	s.ops = s.ops[1:]
	if len(s.ops) == 0 {
		s.ops = s.ops[:0:0]
	}
}

// completes reports whether server message typ is the last answer to k.
func completes(k opKind, typ byte) bool {
	switch k {
	case opParse:
		return typ == '1'
	case opBind:
		return typ == '2'
	case opDescribeStatement, opDescribePortal:
		return typ == 'T' || typ == 'n'
	case opExecute:
		return typ == 'C' || typ == 'I' || typ == 's'
	case opClose:
		return typ == '3'
	}
	return false
}

func (s *Session) appendError(dst []byte, e *pgproto3.ErrorResponse) []byte {
	dst, _ = e.Encode(dst)
	return dst
}

// rowDescription records result column types, and starts the row plan of a
// simple-protocol result.
func (s *Session) rowDescription(head *op, body []byte) {
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return // the client will reject it too; rows then mask to NULL
	}
	types := make([]uint32, len(rd.Fields))
	for i, f := range rd.Fields {
		types[i] = f.DataTypeOID
	}
	switch head.kind {
	case opDescribeStatement:
		s.stmtTypes[head.name] = types
	case opDescribePortal:
		s.portalType[head.name] = types
	case opQuery:
		var masked []policy.MaskedColumn
		if head.dec != nil && head.stmt < len(head.dec.Masked) {
			masked = head.dec.Masked[head.stmt]
		}
		s.cur = newRowPlan(masked, s.detect)
		s.cur.describe(&rd, true)
	}
}

// copyPlan is the plan for COPY TO rows of the statement at the head.
func (s *Session) copyPlan(head *op) *rowPlan {
	var masked []policy.MaskedColumn
	switch {
	case head.kind == opQuery && head.dec != nil && head.stmt < len(head.dec.Masked):
		masked = head.dec.Masked[head.stmt]
	case head.kind == opExecute && head.plan != nil:
		for _, m := range head.plan.masks {
			masked = append(masked, m)
		}
	}
	p := newRowPlan(masked, s.detect)
	p.copyText = true
	return p
}

// Expire ends the session: FATAL to the client, Terminate to the server.
func (s *Session) Expire(reason string, out *session.Output) {
	if s.phase == phaseClosed {
		return
	}
	out.ToClient = s.appendError(out.ToClient, &pgproto3.ErrorResponse{
		Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000", Message: "sluice: " + reason,
	})
	out.ToServer = s.appendHangup(out.ToServer)
	s.phase = phaseClosed
}
