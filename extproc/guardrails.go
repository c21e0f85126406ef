package extproc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sluicedb/sluice/approval"
	"github.com/sluicedb/sluice/audit"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
	"github.com/sluicedb/sluice/policy"
)

// openGuard starts the session's guard and registers the tunnel for
// pause and resume.
func (t *tunnel) openGuard(auth *policy.Authorizer) {
	t.guard = t.srv.agents.Open(t.ident.Subject, t.target.Guardrails)
	auth.SetGuard(t.guard)
	t.srv.live.Store(t.id, t)
}

func (t *tunnel) closeGuard() {
	if t.guard != nil {
		t.srv.live.CompareAndDelete(t.id, t)
		t.guard.Close()
	}
}

// guardStatement feeds a completed statement to the guard; a trip pauses
// the session, which the audit trail, metrics and log record.
func (t *tunnel) guardStatement(r session.StatementRecord) {
	if t.guard == nil || r.Outcome == "deny" {
		return
	}
	o := guard.Outcome{Start: r.Start, End: r.End, Rows: r.Rows, Waited: waitedOnLock(r.Code)}
	if r.Outcome == "approval" {
		o.Start = o.End // its time went to waiting for a human, not the database
	}
	why := t.guard.Done(o)
	if why != "" {
		t.paused(why, "sluice")
	}
}

// waitedOnLock: lock_not_available (lock_timeout), deadlock_detected and
// query_canceled (the statement timeout) on PostgreSQL; ER_LOCK_WAIT_TIMEOUT,
// ER_LOCK_DEADLOCK and ER_STATEMENT_TIMEOUT on MySQL/MariaDB.
func waitedOnLock(code string) bool {
	switch code {
	case "55P03", "40P01", "57014", "1205", "1213", "1969", "3024":
		return true
	}
	return false
}

func (t *tunnel) paused(why, by string) {
	t.log.Warn("session paused: every statement needs approval until a human resumes it", "why", why, "by", by)
	instruments.guardrails.Add(t.ctx, 1, metric.WithAttributes(attribute.String("sluice.target", t.target.Name), attribute.String("sluice.guardrail", "pause")))
	t.audit(audit.Event{Kind: audit.KindSessionPaused, Reason: why, By: by})
}

// Pause pauses, at a human's request, the agent of a live session: all of
// its sessions, on every replica, until a human resumes it.
func (s *Server) Pause(id, by, reason string) error {
	t, err := s.liveTunnel(id)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "paused by " + by
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	was, err := t.guard.Pause(reason, by)
	if err != nil {
		return err
	}
	if !was {
		return fmt.Errorf("agent %s is already paused", t.ident.Subject)
	}
	t.paused(reason, by)
	return nil
}

// Resume lets the paused agent of a live session run again: its strikes
// are forgotten, and the statements its pause holds, on every replica,
// are approved by the resumer.
func (s *Server) Resume(ctx context.Context, id, by string) error {
	t, err := s.liveTunnel(id)
	if err != nil {
		return err
	}
	t.mu.Lock()
	was, err := t.guard.Resume()
	if err != nil {
		t.mu.Unlock()
		return err
	}
	if !was {
		t.mu.Unlock()
		return fmt.Errorf("agent %s is not paused", t.ident.Subject)
	}
	t.log.Info("agent resumed", "by", by)
	t.audit(audit.Event{Kind: audit.KindSessionResumed, By: by})
	agent := t.ident.Subject
	t.mu.Unlock()
	if s.cfg.Approvals == nil {
		return nil
	}
	held, err := s.cfg.Approvals.PauseHolds(ctx, agent)
	if err != nil {
		return fmt.Errorf("agent resumed, but its held statements could not be listed: %w", err)
	}
	for _, id := range held {
		_, err := s.cfg.Approvals.Decide(ctx, id, approval.Decision{Approve: true, By: by, Comment: "agent resumed"})
		if err != nil && !errors.Is(err, approval.ErrDecided) {
			return fmt.Errorf("agent resumed, but its held statement (request %s) could not be approved: %w", id, err)
		}
	}
	return nil
}

// SessionTarget names a live session's target and agent, for deciding who
// may pause or resume it.
func (s *Server) SessionTarget(id string) (target, agent, actingFor string, err error) {
	t, err := s.liveTunnel(id)
	if err != nil {
		return "", "", "", err
	}
	return t.target.Name, t.ident.Subject, t.ident.ActingFor, nil
}

func (s *Server) liveTunnel(id string) (*tunnel, error) {
	v, ok := s.live.Load(id)
	if !ok {
		return nil, approval.ErrNoSession
	}
	return v.(*tunnel), nil
}

// isPauseHold: the approval asked for is the guardrails' pause.
func isPauseHold(r session.HoldRequest) bool {
	return slices.Contains(r.Policies, policy.GuardrailsPolicy)
}
