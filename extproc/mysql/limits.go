package mysql

import (
	"fmt"
	"strconv"
	"time"

	"github.com/sluicedb/sluice/extproc/session"
)

// erTooBigSelect is the error a cut result ends with (ER_TOO_BIG_SELECT,
// SQLSTATE 42000: the server's own "result too large" family).
const erTooBigSelect = 1104

// limitRows applies the guardrails' row and byte limits to the next row of
// the result in flight. Past a limit the client gets ERR in the row's place
// — as when the server fails midway through a result — and the rest of the
// answer is dropped. MySQL keeps the transaction open after an error, so
// nothing else is needed to stay in step with the server.
func (s *Session) limitRows(p phys, out *session.Output) bool {
	l := s.cfg.Target.Guardrails
	b := p.payload
	if l.MaxRows <= 0 && l.MaxBytes <= 0 || len(b) == 0 || b[0] == 0xFF || s.eofLike(b) {
		return false
	}
	r := &s.resp
	r.rows++
	r.bytes += int64(len(b))
	msg := l.CutResult(r.rows, r.bytes)
	if msg == "" {
		return false
	}
	out.ToClient, _ = appendPacket(out.ToClient, errPayload(erTooBigSelect, "42000", msg), p.seq)
	if r.rec != nil {
		r.rec.Rows = r.rows - 1
		r.rec.Error, r.rec.Code = fmt.Sprintf("%d: %s", erTooBigSelect, msg), strconv.Itoa(erTooBigSelect)
	}
	s.log.Warn("result cut by guardrails", "rows", r.rows-1, "bytes", r.bytes, "max_rows", l.MaxRows, "max_bytes", l.MaxBytes)
	return true
}

// afterLogin sets the guardrails' statement timeout for the session before
// the client's first command: MariaDB's max_statement_time (seconds, every
// statement) or MySQL's max_execution_time (milliseconds, SELECT).
func (s *Session) afterLogin(out *session.Output) {
	timeout := s.cfg.Target.Guardrails.StatementTimeout
	if timeout <= 0 {
		return
	}
	set := fmt.Sprintf("SET SESSION max_execution_time = %d", max(1, timeout.Milliseconds()))
	if s.mariadb {
		set = fmt.Sprintf("SET SESSION max_statement_time = %s", strconv.FormatFloat(max(timeout, time.Millisecond).Seconds(), 'f', -1, 64))
	}
	out.ToServer, _ = appendPacket(out.ToServer, append([]byte{comQuery}, set...), 0)
	s.setup = true
}

// setupAnswer takes the server's answer to sluice's SET. Without the
// timeout the guardrail cannot hold, so an error ends the session.
func (s *Session) setupAnswer(p phys, out *session.Output) error {
	if p.cont || p.more || len(p.payload) == 0 {
		return &ProtocolError{"unexpected answer to sluice's session setup"}
	}
	s.setup = false
	if p.payload[0] == 0xFF {
		s.log.Error("the database refused the statement timeout; session ended", "answer", string(p.payload[min(len(p.payload), 9):]))
		s.Expire("the database refused the guardrails' statement timeout", out)
		return nil
	}
	return s.replayBacklog(out)
}

// draining: a cut result is still arriving from the server. The client,
// having seen ERR, may already send its next command; it waits in backlog,
// so that answers stay matched to commands.
func (s *Session) draining() bool {
	return s.resp.cut && s.resp.state != stDone
}

// replayBacklog processes the client packets that waited.
func (s *Session) replayBacklog(out *session.Output) error {
	backlog := s.backlog
	s.backlog = nil
	for i, q := range backlog {
		if s.held != nil || s.setup || s.draining() {
			s.backlog = append(s.backlog, backlog[i:]...)
			return nil
		}
		if err := s.clientPacket(q, out); err != nil {
			return err
		}
	}
	return nil
}
