package postgres

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
)

// limitRows applies the guardrails' row and byte limits to a DataRow or
// COPY TO CopyData message (or its first piece) of the op at the head. Past a limit the client gets an
// error where the next row would have been — as when a statement fails
// midway — and the rest of the answer is dropped (dropCut). It reports
// whether f is dropped.
func (s *Session) limitRows(f frame, out *session.Output) bool {
	if len(s.ops) == 0 {
		return false
	}
	head := &s.ops[0]
	if head.cut {
		return true
	}
	l := s.cfg.Target.Guardrails
	if (l.MaxRows <= 0 && l.MaxBytes <= 0) || (f.piece && !f.first) {
		return false // no limits, or the rest of a row already let through
	}
	head.rows++
	head.bytes += int64(binary.BigEndian.Uint32(f.raw[1:5])) + 1
	msg := l.CutResult(head.rows, head.bytes)
	if msg == "" {
		return false
	}
	s.cut(head, "54000", msg, out)
	if head.rec != nil {
		head.rec.Rows = head.rows - 1
	}
	s.log.Warn("result cut by guardrails", "rows", head.rows-1, "bytes", head.bytes, "max_rows", l.MaxRows, "max_bytes", l.MaxBytes)
	return true
}

// misplacedRow cuts a masked result whose rows have another number of
// columns than the analysis placed the masks in (a join's merged columns,
// a function's columns, CYCLE's path …): masking by index could let the
// real value through, so the client gets an error in the row's place.
func (s *Session) misplacedRow(f frame, out *session.Output) bool {
	if len(s.ops) == 0 || s.ops[0].cut {
		return false
	}
	n, bad := s.plan().misplaced(f)
	if !bad {
		return false
	}
	s.cut(&s.ops[0], "42501", fmt.Sprintf("sluice: the result has %d columns where sluice's analysis has %d, so its masks cannot be placed: refused (name the columns instead of *)", n, s.plan().width), out)
	return true
}

// cut ends the result of the op at the head with an error where the next
// row would have been; the rest of its answer is dropped.
func (s *Session) cut(head *op, code, msg string, out *session.Output) {
	head.cut, s.cutPending = true, true
	out.ToClient = s.appendError(out.ToClient, &pgproto3.ErrorResponse{
		Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg,
	})
	if head.rec != nil {
		head.rec.Error, head.rec.Code = code+": "+msg, code
	}
}

// dropCut drops what the server still sends for a cut op. The client saw
// an error, after which PostgreSQL answers nothing more up to Sync (or, for
// a simple query, up to ReadyForQuery): so the ops behind a cut Execute up
// to Sync are dropped too, though the server runs them.
func (s *Session) dropCut(head *op, f frame) {
	if f.typ == 'E' {
		s.cur = nil
		s.afterError()
		return
	}
	if head.kind == opQuery || !completes(head.kind, f.typ) {
		return // a simple query's answer ends at its ReadyForQuery
	}
	s.pop()
	for i := range s.ops {
		if s.ops[i].kind == opSync {
			break
		}
		s.ops[i].cut = true
	}
}

// abortAfterCut makes the server's transaction fail after a result was cut
// inside a transaction block, so that client and server agree: the client
// saw an error, so it expects "current transaction is aborted". The
// ReadyForQuery at hand is held back; sluice sends the server a statement
// that raises an error, drops that error, and forwards its ReadyForQuery
// (status E). With more client messages already on their way to the server
// that is not possible; the transaction then stays open, which is logged.
func (s *Session) abortAfterCut(out *session.Output) bool {
	pending := 0
	for _, o := range s.ops {
		if o.kind.endsAtReadyForQuery() {
			pending++
		}
	}
	if pending != 1 {
		s.log.Warn("a result was cut inside a transaction with more statements already sent: the transaction stays open on the server")
		return false
	}
	s.popThroughReady()
	q := pgproto3.Query{String: "DO $sluice$ BEGIN RAISE EXCEPTION 'sluice cut a result past its guardrails: this transaction is aborted'; END $sluice$"}
	out.ToServer, _ = q.Encode(out.ToServer)
	s.queue(op{kind: opQuery, cut: true})
	return true
}
