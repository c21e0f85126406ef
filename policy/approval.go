package policy

import (
	"log/slog"
	"time"

	"github.com/sluicedb/sluice/extproc/session"
)

// ResolveApproval settles, for a wire session, a decision whose outcome is
// Approval: SQL a human has just approved (*admitted, consumed here) or
// approved before (a grant the service finds) runs; otherwise the service
// holds it (the ticket's Hold: the session waits for Resume) or it is refused
// with the service's message. Without approvals it stays refused as is.
func ResolveApproval(d Decision, sql string, appr session.Approvals, admitted *string, log *slog.Logger) (Decision, session.Ticket) {
	if *admitted != "" && *admitted == sql {
		*admitted = ""
		d.Outcome = Allow
		return d, session.Ticket{}
	}
	if appr == nil {
		return d, session.Ticket{}
	}
	t := appr.Ask(session.HoldRequest{SQL: sql, Reason: d.Reason, Policies: d.Policies})
	switch {
	case t.Granted:
		log.Info("statement runs under an approval", "approval", t.ID, "sql", sql)
		d.Outcome = Allow
	case t.Hold:
		log.Info("statement held for approval", "approval", t.ID, "sql", sql)
	default:
		d.Outcome, d.Reason = Deny, t.Message
	}
	return d, t
}

// Record starts the audit record of a statement decided as d.
func (d Decision) Record(sql string) *session.StatementRecord {
	r := &session.StatementRecord{SQL: sql, Outcome: d.Outcome.String(), Reason: d.Reason, Policies: d.Policies, Tables: d.Tables, Kinds: d.Kinds, Start: time.Now()}
	if d.Shadow {
		r.Outcome = "shadow:" + d.WouldBe.String()
	}
	for _, cols := range d.Masked {
		for _, m := range cols {
			r.Masked = append(r.Masked, m.Name)
		}
	}
	return r
}
