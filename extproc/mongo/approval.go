package mongo

import (
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// heldCmd is a command waiting for a human.
type heldCmd struct {
	id   string
	raw  []byte // the whole message, as the client sent it
	text string
	dec  policy.Decision
}

// approval handles a command whose outcome is "approval": it returns the
// decision to go on with and true to go on now; false means it is held
// (out.Hold names the request).
func (s *Session) approval(d policy.Decision, text string, m Message, out *session.Output) (policy.Decision, bool) {
	d, t := policy.ResolveApproval(d, text, s.cfg.Approvals, &s.admit, s.log)
	if !t.Hold {
		return d, true
	}
	s.held = &heldCmd{id: t.ID, raw: append([]byte(nil), m.Raw...), text: text, dec: d}
	out.Hold = t.ID
	return d, false
}

// Resume ends a hold: the approved command goes to the server (decided
// again, the approval admitting it); a refused one is answered with the
// human's reason; then the messages that waited are processed.
func (s *Session) Resume(v session.Verdict, out *session.Output) {
	h := s.held
	if h == nil || h.id != v.ID || s.closed {
		return
	}
	s.held = nil
	if v.Fatal {
		s.end("sluice: "+v.Message, out)
		return
	}
	m, err := messageOf(h.raw)
	if err != nil {
		_ = s.fail(err, out)
		return
	}
	if v.Approved {
		s.log.Info("approved command released", "approval", v.ID)
		s.admit = h.text
		err = s.clientMessage(m, out)
		s.admit = ""
	} else {
		reason := "sluice: " + v.Message
		s.refuseMsg(m, reason, out)
		if r := s.record(h.text, h.dec); r != nil {
			r.Outcome, r.Error, r.Code = policy.Deny.String(), reason, "13"
			s.cfg.Observer.Statement(*r)
		}
	}
	if err == nil {
		err = s.replayBacklog(out)
	}
	if err != nil {
		_ = s.fail(err, out)
	}
}
