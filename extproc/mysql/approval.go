package mysql

import (
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// heldCmd is a COM_QUERY or COM_STMT_EXECUTE waiting for a human.
type heldCmd struct {
	id      string
	payload []byte
	sql     string
	dec     policy.Decision
}

func (p phys) clone() phys {
	raw := append([]byte(nil), p.raw...)
	return phys{seq: p.seq, raw: raw, payload: raw[4:], cont: p.cont, more: p.more}
}

// approval handles a command whose outcome is "approval": it returns the
// decision to go on with and true to go on now; false means it is held
// (out.Hold names the request).
func (s *Session) approval(d policy.Decision, sql string, payload []byte, out *session.Output) (policy.Decision, bool) {
	d, t := policy.ResolveApproval(d, sql, s.cfg.Approvals, &s.admit, s.log)
	if !t.Hold {
		return d, true
	}
	s.held = &heldCmd{id: t.ID, payload: append([]byte(nil), payload...), sql: sql, dec: d}
	s.resp = response{kind: respNone}
	out.Hold = t.ID
	return d, false
}

// Resume ends a hold: the approved command goes to the server; a refused
// one is answered with ERR; then the packets that waited are processed.
func (s *Session) Resume(v session.Verdict, out *session.Output) {
	h := s.held
	if h == nil || h.id != v.ID || s.phase != phaseCommand {
		return
	}
	s.held = nil
	if v.Fatal {
		s.backlog = nil
		s.Expire(v.Message, out)
		return
	}
	if v.Approved {
		s.log.Info("approved statement released", "approval", v.ID)
		s.admit = h.sql
		err := s.command(h.payload, out)
		s.admit = "" // for this statement only (a resumed session may not even ask)
		if err != nil {
			_ = s.fail(err, out)
			return
		}
	} else {
		d := h.dec
		d.Outcome, d.Reason = policy.Deny, v.Message
		s.refuse(d, h.sql, out)
	}
	if err := s.replayBacklog(out); err != nil {
		_ = s.fail(err, out)
	}
}
