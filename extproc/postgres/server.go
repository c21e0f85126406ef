package postgres

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

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
				return &ProtocolError{Msg: "malformed ReadyForQuery from the server"}
			}
			s.phase = phaseReady
		case 'K':
			var m pgproto3.BackendKeyData
			if err := m.Decode(f.body); err == nil {
				s.log = s.log.With("backend_pid", m.ProcessID)
			}
		case 'S':
			if err := s.parameterStatus(f.body); err != nil {
				return err
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
	case 'S':
		if err := s.parameterStatus(f.body); err != nil {
			return err
		}
		fallthrough
	case 'N', 'A':
		// Notices, notifications and parameter changes come at any time;
		// a notice about a protected statement may quote a value.
		if f.typ == 'N' && len(s.ops) > 0 && s.ops[0].protected {
			return nil
		}
		out.ToClient = append(out.ToClient, f.raw...)
		return nil
	case 'D', 'd':
		// Rows and copy data belong to the op at the head.
		if s.limitRows(f, out) || s.misplacedRow(f, out) {
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
	for len(s.ops) > 0 && s.ops[0].skipped {
		if r := s.ops[0].rec; r != nil && r.Error == "" {
			r.Error = "not run: the server skipped it after an earlier error"
		}
		s.pop() // discarded by the server: no answer comes
	}
	if len(s.ops) == 0 {
		// e.g. a FATAL error on shutdown.
		out.ToClient = append(out.ToClient, f.raw...)
		return nil
	}
	head := &s.ops[0]
	if head.kind == opQuery && !head.started {
		// The server runs the Query: it drops the unnamed statement, and
		// the unnamed portal is replaced or left unusable.
		head.started = true
		delete(s.obj.stmts, "")
		delete(s.obj.portals, "")
	}
	if head.cut && f.typ != 'Z' {
		s.dropCut(head, f)
		return nil
	}
	if f.typ != 'E' && !answers(head.kind, f.typ) && head.denial == nil {
		// The server answers another message than sluice thinks it is
		// answering: every plan from here on would be wrong. Fail closed.
		return &ProtocolError{Msg: fmt.Sprintf("the server answered %q to a %s: client and server are out of step", f.typ, head.kind)}
	}
	if s.copyIn && (f.typ == 'E' || f.typ == 'Z' || f.typ == 'C') {
		s.copyIn = false // the COPY ended (or never began) on the server
	}
	if head.denial != nil {
		if f.typ != 'E' {
			// The failing Describe succeeded: nothing refused was forwarded,
			// but the client and server are out of step. Fail closed.
			return &ProtocolError{Msg: fmt.Sprintf("server answered %q to a refused statement's placeholder", f.typ)}
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
	if f.typ == 'E' && head.protected {
		out.ToClient = s.appendError(out.ToClient, withheld(f.body))
	} else {
		out.ToClient = append(out.ToClient, f.raw...)
	}
	if head.rec != nil {
		observe(head.rec, f)
	}
	switch f.typ {
	case 'E':
		s.cur = nil
		s.failed(head)
		s.follower().ServerError()
		s.afterError()
		return nil
	case 'Z':
		if len(f.body) != 1 {
			return &ProtocolError{Msg: "malformed ReadyForQuery from the server"}
		}
		s.cur = nil
		s.readyForQuery(f.body[0])
		s.follower().ServerReady(f.body[0])
		s.popThroughReady()
		return nil
	case 'T', 'n':
		s.rowDescription(head, f.body, f.typ == 'n')
		if tap := s.tapFor(); f.typ == 'T' && tap != nil {
			tap.columns(f.body)
		}
	case '1':
		if head.kind == opParse {
			s.obj.stmts[head.name] = head.prep
		}
	case '2':
		if head.kind == opBind {
			s.obj.portals[head.name] = head.port
		}
	case '3':
		if head.kind == opClose && head.close == 'S' {
			delete(s.obj.stmts, head.name)
		} else if head.kind == opClose {
			delete(s.obj.portals, head.name)
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
		if f.typ == 'C' {
			s.completed(head, f.body)
		}
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

// failed follows what an error leaves of the object the head op named: a
// failed Parse of the unnamed statement has dropped the old one first, and
// a failed Bind leaves no usable unnamed portal.
func (s *Session) failed(head *op) {
	switch {
	case head.kind == opParse && head.name == "":
		delete(s.obj.stmts, "")
	case head.kind == opBind && head.name == "":
		delete(s.obj.portals, "")
	}
}

// completed applies what a statement the server completed did to the
// session's objects and transaction.
func (s *Session) completed(head *op, body []byte) {
	switch head.kind {
	case opQuery:
		s.applyQueryEffects(head, head.stmt)
	case opExecute:
		s.applyQueryEffects(head, 0)
	default:
		return
	}
	var m pgproto3.CommandComplete
	if m.Decode(body) == nil {
		s.commandTag(string(m.CommandTag))
		s.follower().ServerCommandTag(string(m.CommandTag))
	}
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
	if len(s.ops) == 0 {
		s.skipping = true // messages the client sends next are skipped too
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
		// Start again at the front of the same array (popped slots are
		// zeroed): a batch then queues without allocating. A long
		// pipeline's array is let go.
		if cap(s.opsArray) <= maxKeptOps {
			s.ops = s.opsArray[:0]
		} else {
			s.ops, s.opsArray = nil, nil
		}
	}
}

// maxKeptOps bounds the op array kept between batches.
const maxKeptOps = 64

// queue appends an op, remembering the array's front when it grows.
func (s *Session) queue(o op) {
	grows := len(s.ops) == cap(s.ops)
	s.ops = append(s.ops, o)
	if grows {
		s.opsArray = s.ops
	}
}

// answers reports whether server message typ can answer an op of kind k
// (ErrorResponse answers any).
func answers(k opKind, typ byte) bool {
	switch k {
	case opParse:
		return typ == '1'
	case opBind:
		return typ == '2'
	case opDescribeStatement:
		return typ == 't' || typ == 'T' || typ == 'n'
	case opDescribePortal:
		return typ == 'T' || typ == 'n'
	case opClose:
		return typ == '3'
	case opExecute:
		return strings.IndexByte("CIsGHWcd", typ) >= 0
	case opQuery:
		return strings.IndexByte("TCIGHWcdZ", typ) >= 0
	case opSync, opFunctionCall:
		return typ == 'Z' || typ == 'V'
	}
	return false
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

// rowDescription records result column types (noData: the statement or
// portal returns none), and starts the row plan of a simple-protocol result.
func (s *Session) rowDescription(head *op, body []byte, noData bool) {
	var rd pgproto3.RowDescription
	if !noData {
		if err := rd.Decode(body); err != nil {
			return // the client will reject it too; rows then mask to NULL
		}
	}
	types := make([]uint32, len(rd.Fields))
	for i, f := range rd.Fields {
		types[i] = f.DataTypeOID
	}
	switch head.kind {
	case opDescribeStatement:
		// The server describes the statement it holds now, which is the
		// one sluice holds: every earlier message has been answered.
		if p := s.obj.stmts[head.name]; p != nil {
			p.types = types
		}
	case opDescribePortal:
		if p := s.obj.portals[head.name]; p != nil {
			p.types = types
		}
	case opQuery:
		if noData {
			return
		}
		masked, width := s.queryMasks(head)
		s.cur = newRowPlan(masked, width, s.detect)
		s.cur.describe(&rd, true)
	}
}

// queryMasks are the masked columns of the simple Query statement now
// answering, and its result's width: its own, or for a FETCH, its cursor's.
func (s *Session) queryMasks(head *op) ([]policy.MaskedColumn, int) {
	if head.stmt < len(head.cursors) && head.cursors[head.stmt] != nil {
		c := head.cursors[head.stmt]
		return c.masked, c.width
	}
	if head.dec != nil && head.stmt < len(head.dec.Masked) {
		return head.dec.Masked[head.stmt], widthOf(head.dec, head.stmt)
	}
	return nil, 0
}

// copyPlan is the plan for COPY TO rows of the statement at the head.
func (s *Session) copyPlan(head *op) *rowPlan {
	var p *rowPlan
	switch {
	case head.kind == opExecute && head.plan != nil:
		p = &rowPlan{masks: head.plan.masks, width: head.plan.width, detect: s.detect}
	default:
		masked, width := s.queryMasks(head)
		p = newRowPlan(masked, width, s.detect)
	}
	p.copyText = true
	return p
}

// withheld is the server's error about a protected statement without its
// text: "invalid input syntax for type integer: \"x@example.com\"" would
// show a masked value. The SQLSTATE, severity and position stay.
func withheld(body []byte) *pgproto3.ErrorResponse {
	var m pgproto3.ErrorResponse
	if err := m.Decode(body); err != nil {
		return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "XX000", Message: "sluice: the statement failed; the server's message is withheld"}
	}
	return &pgproto3.ErrorResponse{
		Severity: m.Severity, SeverityUnlocalized: m.SeverityUnlocalized, Code: m.Code, Position: m.Position,
		Message: fmt.Sprintf("sluice: the statement failed (SQLSTATE %s); the server's message is withheld, since the statement reads masked values it may quote", m.Code),
	}
}
