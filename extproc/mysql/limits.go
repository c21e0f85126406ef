package mysql

import (
	"fmt"
	"strconv"

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
