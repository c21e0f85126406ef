package mongo

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// heldCmd is a command waiting for a human.
type heldCmd struct {
	id    string
	raw   []byte // the whole message, as the client sent it
	text  string // its shape, for the record
	exact string // what the human approves (approvalText)
	dec   policy.Decision
}

// volatile are fields of a command that do not change what it does:
// the driver's session, cluster time, read preference.
var volatile = []string{"lsid", "$clusterTime", "$readPreference", "txnNumber", "autocommit", "startTransaction", "$audit"}

// approvalText is the command a human approves, exactly (values and all,
// its sequences as arrays), without the fields that change per connection:
// the request shows it, and a grant or a resubmission matches it.
func approvalText(body bsoncore.Document, seqs []Sequence) string {
	b, _ := removeKeys(body, volatile...)
	js, err := bson.MarshalExtJSON(bson.Raw(withSequences(b, seqs)), false, false)
	if err != nil {
		return withSequences(b, seqs).String()
	}
	return string(js)
}

// approval handles a command whose outcome is "approval": it returns the
// decision to go on with and true to go on now; false means it is held
// (out.Hold names the request).
func (s *Session) approval(d policy.Decision, text, exact string, m Message, out *session.Output) (policy.Decision, bool) {
	d, t := policy.ResolveApproval(d, exact, s.cfg.Approvals, &s.admit, s.log)
	if !t.Hold {
		return d, true
	}
	s.held = &heldCmd{id: t.ID, raw: append([]byte(nil), m.Raw...), text: text, exact: exact, dec: d}
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
		// Admitted when it is decided again: now, or once sluice has
		// learnt the views it reads (the command waits at the front of
		// the backlog, and the next decision consumes the approval).
		s.admit = h.exact
		err = s.clientMessage(m, out)
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
