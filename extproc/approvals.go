package extproc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/policy"
)

// Ask implements session.Approvals for the tunnel's agent and target.
func (t *tunnel) Ask(r session.HoldRequest) session.Ticket {
	svc := t.srv.cfg.Approvals
	fp := policy.Fingerprint(t.target.Protocol, r.SQL)
	ctx, cancel := context.WithTimeout(t.ctx, 5*time.Second)
	defer cancel()
	if g, err := svc.Grant(ctx, t.ident.Subject, t.target.Name, r.SQL, fp); err != nil {
		t.log.Error("approval store unavailable; statement refused", "err", err)
		return session.Ticket{Message: "approval required, and the approval service is unavailable: " + err.Error()}
	} else if g != nil {
		return session.Ticket{ID: g.ID, Granted: true}
	}
	async := slices.ContainsFunc(t.ident.Groups, func(g string) bool { return slices.Contains(t.srv.cfg.AsyncGroups, g) })
	req := &approval.Request{
		Agent: t.ident.Subject, ActingFor: t.ident.ActingFor, Target: t.target.Name, Session: t.id,
		Statement: r.SQL, TextHash: approval.TextHash(r.SQL), Fingerprint: fp, Policies: r.Policies, Reason: r.Reason, Mode: "hold",
	}
	if async {
		req.Mode = "async"
	}
	if err := svc.Submit(ctx, req); err != nil {
		t.log.Error("cannot record approval request; statement refused", "err", err)
		return session.Ticket{Message: "approval required, and the approval service is unavailable: " + err.Error()}
	}
	if async {
		return session.Ticket{ID: req.ID, Message: fmt.Sprintf("%s: approval pending, request %s; resubmit the statement once a human approves it", r.Reason, req.ID)}
	}
	return session.Ticket{ID: req.ID, Hold: true}
}

// await waits for the decision on a held statement and resumes the session.
func (t *tunnel) await(id string) {
	r, err := t.srv.cfg.Approvals.Wait(t.ctx, id)
	v := session.Verdict{ID: id}
	switch {
	case err != nil && errors.Is(context.Cause(t.ctx), errShutdown):
		v.Fatal = true
		v.Message = fmt.Sprintf("sluice is restarting while approval request %s was pending; it stays pending: once it is approved, reconnect and resubmit the statement", id)
	case err != nil && t.ctx.Err() != nil:
		return // the tunnel is gone; the request stays pending
	case err != nil:
		v.Message = fmt.Sprintf("approval request %s failed: %v", id, err)
	case r.Status == approval.Approved:
		v.Approved = true
	case r.Status == approval.Denied:
		v.Message = fmt.Sprintf("approval request %s was denied by %s", id, r.DecidedBy)
		if r.Comment != "" {
			v.Message += ": " + r.Comment
		}
	case r.Status == approval.Expired:
		v.Message = fmt.Sprintf("approval request %s timed out after %s without a decision", id, t.srv.cfg.Approvals.Timeout())
	default:
		v.Message = fmt.Sprintf("approval request %s is %s", id, r.Status)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	res, ok := t.sess.(session.Resumer)
	if !ok {
		return
	}
	t.log.Info("approval decided", "approval", id, "approved", v.Approved, "reason", v.Message)
	t.out.Reset()
	res.Resume(v, &t.out)
	if t.out.Hold != "" {
		go t.await(t.out.Hold)
	}
	t.sendOut("the held statement's outcome")
}
