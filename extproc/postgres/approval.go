package postgres

import (
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// heldStmt is a Query or Bind waiting for a human's decision.
type heldStmt struct {
	id     string
	frame  frame
	sql    string
	dec    policy.Decision
	simple bool
}

func (f frame) clone() frame {
	c := frame{typ: f.typ, piece: f.piece, raw: append([]byte(nil), f.raw...)}
	if f.body != nil {
		c.body = c.raw[len(f.raw)-len(f.body):]
	}
	return c
}

// approval handles a statement whose outcome is "approval". It returns the
// decision to go on with and true to go on now; false means the message is
// held (out.Hold names the request) or already answered.
func (s *Session) approval(d policy.Decision, sql string, f frame, simple bool, out *session.Output) (policy.Decision, bool) {
	d, t := policy.ResolveApproval(d, sql, s.cfg.Approvals, &s.admit, s.log)
	if !t.Hold {
		return d, true
	}
	s.held = &heldStmt{id: t.ID, frame: f.clone(), sql: sql, dec: d, simple: simple}
	out.Hold = t.ID
	return d, false
}

// Resume ends a hold: the approved statement goes to the server as if it had
// just arrived; a refused one is answered with the reason; then the client's
// messages that waited behind it are processed in order.
func (s *Session) Resume(v session.Verdict, out *session.Output) {
	h := s.held
	if h == nil || h.id != v.ID || s.phase != phaseReady {
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
		err := s.readyFrame(h.frame, out)
		s.admit = "" // for this statement only (a resumed session may not even ask)
		if err != nil {
			_ = s.fail(err, out)
			return
		}
	} else {
		d := h.dec
		d.Outcome, d.Reason = policy.Deny, v.Message
		if h.simple {
			s.refuseSimple(d, h.sql, out)
		} else {
			s.refuseExtended(d, h.sql, out)
		}
	}
	if err := s.drain(out); err != nil {
		_ = s.fail(err, out)
	}
}
