package postgres

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/mask"
	"github.com/sluicedb/sluice/policy"
)

// Authorizer decides statements for one session's principal and target.
type Authorizer interface {
	AuthorizeSQL(sql string) policy.Decision
}

// relationFollower is an Authorizer that follows the relations the session
// creates (temporary tables), as the server confirms them.
type relationFollower interface {
	ApplyEffect(policy.Effect)
	ServerError()
	ServerCommandTag(tag string)
	ServerReady(status byte)
}

// follower is the session's relationFollower, or one that does nothing.
func (s *Session) follower() relationFollower {
	if f, ok := s.cfg.Authorizer.(relationFollower); ok {
		return f
	}
	return noFollower{}
}

type noFollower struct{}

func (noFollower) ApplyEffect(policy.Effect) {}
func (noFollower) ServerError()              {}
func (noFollower) ServerCommandTag(string)   {}
func (noFollower) ServerReady(byte)          {}

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

func (k opKind) String() string {
	return [...]string{"Query", "FunctionCall", "Sync", "Parse", "Bind", "Describe (statement)", "Describe (portal)", "Execute", "Close"}[k]
}

func (k opKind) endsAtReadyForQuery() bool {
	return k == opQuery || k == opFunctionCall || k == opSync
}

// op is one client message awaiting the server's answer. The ops form a FIFO
// that mirrors the server's processing order, so sluice knows which message
// every server response belongs to and can put its own responses in place.
type op struct {
	kind opKind
	// batch numbers the run of messages up to a Sync (or a simple Query):
	// an error makes the server skip the rest of its batch.
	batch int
	// skipped: sent while the server skips messages after an error, up to
	// the next Sync; it gets no answer.
	skipped bool
	name    string // Parse, Close, Describe: the object; Bind, Execute: the portal
	close   byte   // Close: 'S' or 'P'
	// prep and port are what a Parse or Bind creates once the server
	// confirms it.
	prep *prepared
	port *portal
	dec  *policy.Decision // Query: the decision, for its masking plans and effects
	sql  string           // Query: its text
	// cursors are, for each statement of a Query, the cursor a FETCH of
	// it reads (its rows are masked with that cursor's plan).
	cursors []*portal
	started bool     // Query: the server has begun answering it
	stmt    int      // Query: index of the statement now answering
	plan    *rowPlan // Execute: how to rewrite its rows
	// denial, when set, replaces the server's error for this op: sluice sent
	// the server a harmless message that fails in place of the refused one.
	denial *pgproto3.ErrorResponse
	// protected: the statement reads values the agent sees only masked;
	// the server's errors and notices about it are withheld (they may
	// quote a value).
	protected bool
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

	ops      []op
	opsArray []op // ops' array from its front, reused when ops empties
	batch    int  // the batch new client messages join
	// skipping: an extended-protocol message failed and no Sync has been
	// sent since: the server discards every message until one comes (a
	// pipeline that only flushes).
	skipping bool
	// refusedBatch is 1 + the last batch that holds a refusal (0: none).
	refusedBatch int
	obj          objects          // prepared statements and portals, as confirmed
	cur          *rowPlan         // simple protocol: the result being returned
	scratchRow   pgproto3.DataRow // decoded recorded rows (see rowTap)
	stats        maskStats
	detect       bool
	login        *brokeredLogin // nil: the client authenticates itself
	recordRows   bool           // the observer keeps the rows the client received

	// held is the statement waiting for a human; waiting: a message names
	// an object whose fate an earlier batch still decides. Either way the
	// client's later messages wait in backlog, in order.
	held    *heldStmt
	waiting bool
	backlog []frame
	// copyIn: a COPY FROM STDIN was sent; until the client's CopyDone or
	// CopyFail (or the statement's end) the server reads only copy data,
	// and ignores a Sync the op queue would count.
	copyIn bool
	// admit is SQL a human approved: its next decision counts as allowed.
	admit string

	// cutPending: a result was cut; if the client is in a transaction
	// block, the server's transaction must fail too (see limitRows).
	cutPending bool

	// utf8: the server reports client_encoding UTF8, so the JSON keys in
	// results are the bytes sluice read in the statement.
	utf8 bool

	// poisonName names a prepared statement that cannot exist; describing it
	// makes the server fail in place of a refused message, so the server
	// itself aborts the transaction and skips to Sync as PostgreSQL would.
	poisonName string

	// Envoy takes no bytes toward the client before the database has sent
	// one (ENVOY-NOTES: a "spurious" reply kills the tunnel), and in
	// PostgreSQL the client speaks first. spoke: the server has sent a
	// byte. negotiating: the client's SSLRequest or GSSENCRequest went to
	// the server as an SSLRequest, whose one-byte answer sluice replaces.
	// early and earlyServer: a refusal before the server spoke, sent when
	// it does (its first bytes are dropped in their place).
	spoke       bool
	negotiating int // requests the server's one answer will answer
	early       []byte
	earlyServer []byte
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
		obj:        newObjects(),
		stats:      maskStats{},
		detect:     cfg.Target.Tags["detectors"] == "on",
		poisonName: "sluice: refused " + hex.EncodeToString(nonce[:]),
		recordRows: cfg.Observer != nil && cfg.Observer.RecordsResults(),
	}
	s.client = framer{startup: true, maxFrame: cfg.MaxFrame, opaque: clientOpaque}
	s.server = framer{maxFrame: cfg.MaxFrame, opaque: s.serverOpaque}
	return s
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
		p := s.ops[0].plan
		p.resolveTypes()
		return p
	}
	return s.cur
}

// ProtocolError is a malformed or forbidden message; the session is over.
// Code is the SQLSTATE the client gets (empty: 08P01, protocol violation).
type ProtocolError struct {
	Msg  string
	Code string
}

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
	if len(data) > 0 && !s.spoke {
		s.spoke = true
		var done bool
		if data, done = s.firstServerBytes(data, out); done {
			return nil
		}
	}
	if s.phase == phaseClosed {
		return nil
	}
	err := s.server.feed(data, func(f frame) error { return s.serverFrame(f, out) })
	if err == nil && s.waiting && s.settled() {
		// The names the waiting messages use are certain now.
		err = s.drain(out)
	}
	return s.fail(err, out)
}

// fail ends a session on a protocol error: the client gets a FATAL error and
// the server a Terminate (or, before startup, a void cancel that makes it hang up).
func (s *Session) fail(err error, out *session.Output) error {
	if err == nil {
		return nil
	}
	var pe *ProtocolError
	msg, code := err.Error(), "08P01"
	if errors.As(err, &pe) {
		msg = pe.Msg
		if pe.Code != "" {
			code = pe.Code
		}
	}
	s.log.Warn("postgres session refused", "err", err)
	s.end(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "sluice: " + msg}, out)
	return err
}

// end sends the client a FATAL error and the server a hang-up. Before the
// server has spoken, the error waits for its first bytes: in the startup
// phase an SSLRequest makes it answer one byte, which the error replaces.
func (s *Session) end(e *pgproto3.ErrorResponse, out *session.Output) {
	if s.phase == phaseClosed {
		return
	}
	if s.spoke {
		out.ToClient = s.appendError(out.ToClient, e)
		out.ToServer = s.appendHangup(out.ToServer)
	} else {
		s.early = s.appendError(nil, e)
		if s.phase == phaseStartup && s.negotiating == 0 {
			out.ToServer = appendSSLRequest(out.ToServer)
		}
		s.earlyServer = s.appendHangup(nil)
	}
	s.phase = phaseClosed
}

func appendSSLRequest(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 8)
	return binary.BigEndian.AppendUint32(dst, codeSSLRequest)
}

// firstServerBytes handles the server's first bytes: the answer to an
// SSLRequest sluice sent in the client's place, or what a refusal made
// before them replaces. done: nothing of data is left to process.
func (s *Session) firstServerBytes(data []byte, out *session.Output) ([]byte, bool) {
	if s.early != nil {
		out.ToClient = append(out.ToClient, s.early...)
		out.ToServer = append(out.ToServer, s.earlyServer...)
		s.early, s.earlyServer = nil, nil
		return nil, true
	}
	if s.negotiating == 0 {
		return data, false
	}
	n := s.negotiating
	s.negotiating = 0
	switch data[0] {
	case 'N':
		for range n {
			out.ToClient = append(out.ToClient, 'N')
		}
		return data[1:], len(data) == 1
	case 'S':
		// The database would now speak TLS, which sluice cannot read
		// inside. The client gets an error in place of the answer (libpq
		// reads an 'E' there and shows it); the server a cancel request
		// it cannot read as a TLS hello, so it hangs up.
		s.log.Warn("the database answered the SSLRequest with TLS; the session ends")
		out.ToClient = s.appendError(out.ToClient, &pgproto3.ErrorResponse{
			Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01",
			Message: "sluice: the database offers TLS, which the gateway cannot see into: connect through `sluice connect`, which answers the client's TLS request itself, or use sslmode=disable",
		})
		out.ToServer = s.appendHangup(out.ToServer)
		s.phase = phaseClosed
		return nil, true
	default:
		// An error of the server's own (e.g. it cannot start a backend):
		// the client reads it as the answer.
		out.ToClient = append(out.ToClient, data...)
		s.phase = phaseClosed
		return nil, true
	}
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
			return &ProtocolError{Msg: fmt.Sprintf("unexpected message %q during authentication", f.typ)}
		}
		if s.login != nil {
			return &ProtocolError{Msg: "sluice logs in to the database for the agent: the client sends no password"}
		}
		out.ToServer = append(out.ToServer, f.raw...)
		return nil
	case phaseReady:
		if s.blocked() {
			s.backlog = append(s.backlog, f.clone())
			return nil
		}
		return s.readyFrame(f, out)
	default:
		return nil
	}
}

// blocked: client messages wait in backlog (a held statement, or a name
// whose fate the server has not told yet).
func (s *Session) blocked() bool { return s.held != nil || s.waiting }

// wait puts f, and every client message after it, in backlog until the
// ops of earlier batches are answered.
func (s *Session) wait(f frame) {
	s.waiting = true
	s.backlog = append([]frame{f.clone()}, s.backlog...) // first: it may come from drain
}

// drain processes the messages that waited, until one must wait again.
func (s *Session) drain(out *session.Output) error {
	if s.waiting && s.settled() {
		s.waiting = false
	}
	for len(s.backlog) > 0 && !s.blocked() {
		f := s.backlog[0]
		s.backlog = s.backlog[1:]
		if len(s.backlog) == 0 {
			s.backlog = nil
		}
		if err := s.readyFrame(f, out); err != nil {
			return err
		}
	}
	return nil
}

// Expire ends the session: FATAL to the client, Terminate to the server.
func (s *Session) Expire(reason string, out *session.Output) {
	s.end(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000", Message: "sluice: " + reason}, out)
}
