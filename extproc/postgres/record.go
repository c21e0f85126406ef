package postgres

import (
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// record starts a statement's record, when someone observes them.
func (s *Session) record(sql string, d policy.Decision) *session.StatementRecord {
	if s.cfg.Observer == nil {
		return nil
	}
	r := &session.StatementRecord{SQL: sql, Outcome: d.Outcome.String(), Reason: d.Reason, Policies: d.Policies, Tables: d.Tables, Start: time.Now()}
	if d.Shadow {
		r.Outcome = "shadow:" + d.WouldBe.String()
	}
	for _, cols := range d.Masked {
		for _, m := range cols {
			r.Masked = append(r.Masked, m.Name)
		}
	}
	if !d.Allowed() && r.Error == "" {
		r.Error = "sluice: " + d.Reason
	}
	return r
}

// executeRecord is the record of executing a bound portal.
func (s *Session) executeRecord(portal string) *session.StatementRecord {
	if s.cfg.Observer == nil {
		return nil
	}
	p, ok := s.portals[portal]
	if !ok {
		return nil
	}
	sql := s.stmts[p.stmt]
	return s.record(sql, s.authorize(sql)) // memoized
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
			r.Error = m.Code + ": " + m.Message
		}
	}
}
