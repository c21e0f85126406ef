package postgres

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// record starts a statement's record, when someone observes them.
func (s *Session) record(sql string, d policy.Decision) *session.StatementRecord {
	if s.cfg.Observer == nil {
		return nil
	}
	r := d.Record(sql)
	if !d.Allowed() {
		// A refusal skipped by the server (after an earlier error) still
		// says why in the record.
		r.Error = "sluice: " + d.Reason
	}
	return r
}

// observe takes what the server answered the statement: rows from command
// tags ("SELECT 5", "INSERT 0 1"), and the error the client saw.
func observe(r *session.StatementRecord, f frame) {
	switch f.typ {
	case 'C':
		var m pgproto3.CommandComplete
		if m.Decode(f.body) == nil {
			fields := strings.Fields(string(m.CommandTag))
			if len(fields) > 1 {
				if n, err := strconv.ParseInt(fields[len(fields)-1], 10, 64); err == nil {
					r.Rows += n
				}
			}
		}
	case 'E':
		var m pgproto3.ErrorResponse
		if m.Decode(f.body) == nil {
			r.Error, r.Code = m.Code+": "+m.Message, m.Code
		}
	}
}

// tapFor is the head op's row tap, started on first use.
func (s *Session) tapFor() *rowTap {
	if !s.recordRows || len(s.ops) == 0 || s.ops[0].rec == nil {
		return nil
	}
	if s.ops[0].tap == nil {
		s.ops[0].tap = &rowTap{scratch: &s.scratchRow}
	}
	return s.ops[0].tap
}

// Recording bounds per statement: rows and bytes kept, and the largest row.
const (
	recordRows   = 100
	recordBytes  = 64 << 10
	recordMaxRow = 16 << 10
)

// rowTap records the DataRows sent to the client, reassembling rows that
// streamed through in pieces, without ever holding more than recordMaxRow.
type rowTap struct {
	// scratch is the session's DataRow to decode into: pgproto3 gives a
	// fresh one room for 32 values, an allocation per recorded row.
	scratch *pgproto3.DataRow
	res     session.Result
	buf     []byte
	skip    int // bytes left of a row too large to keep
	bytes   int
}

func (t *rowTap) feed(b []byte) {
	for len(b) > 0 {
		if t.skip > 0 {
			n := min(t.skip, len(b))
			t.skip -= n
			b = b[n:]
			continue
		}
		t.buf = append(t.buf, b...)
		b = nil
		for len(t.buf) >= 5 {
			n := 1 + int(binary.BigEndian.Uint32(t.buf[1:5]))
			if n > recordMaxRow {
				t.res.Truncated = true
				rest := t.buf
				t.buf = t.buf[:0]
				if len(rest) >= n {
					b = rest[n:]
				} else {
					t.skip = n - len(rest)
				}
				break
			}
			if len(t.buf) < n {
				break
			}
			t.row(t.buf[:n])
			t.buf = t.buf[n:]
		}
		if len(t.buf) == 0 {
			t.buf = t.buf[:0]
		}
	}
}

func (t *rowTap) row(msg []byte) {
	if msg[0] != 'D' {
		return
	}
	if len(t.res.Rows) >= recordRows || t.bytes+len(msg) > recordBytes {
		t.res.Truncated = true
		return
	}
	m := t.scratch
	if m.Decode(msg[5:]) != nil {
		return
	}
	t.bytes += len(msg)
	row := make([]*string, len(m.Values))
	for i, v := range m.Values {
		if v == nil {
			continue
		}
		s := string(v)
		if !utf8.ValidString(s) {
			s = "\\x" + hex.EncodeToString(v)
		}
		row[i] = &s
	}
	t.res.Rows = append(t.res.Rows, row)
}

// columns records a RowDescription's column names.
func (t *rowTap) columns(body []byte) {
	var rd pgproto3.RowDescription
	if rd.Decode(body) != nil {
		return
	}
	t.res.Columns = t.res.Columns[:0]
	for _, f := range rd.Fields {
		t.res.Columns = append(t.res.Columns, string(f.Name))
	}
}

func (t *rowTap) result() *session.Result {
	if t == nil || (len(t.res.Columns) == 0 && len(t.res.Rows) == 0) {
		return nil
	}
	r := t.res
	return &r
}
