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

// Pause pauses a live session at a human's request.
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
	if !t.guard.Pause(reason) {
		return fmt.Errorf("session %s is already paused", id)
	}
	t.paused(reason, by)
	return nil
}

// Resume lets a paused session run again: its strikes are forgotten, and
// the statement it holds because of the pause is approved by the resumer.
func (s *Server) Resume(ctx context.Context, id, by string) error {
	t, err := s.liveTunnel(id)
	if err != nil {
		return err
	}
	t.mu.Lock()
	if !t.guard.Resume() {
		t.mu.Unlock()
		return fmt.Errorf("session %s is not paused", id)
	}
	t.log.Info("session resumed", "by", by)
	t.audit(audit.Event{Kind: audit.KindSessionResumed, By: by})
	held := t.pauseHold
	t.mu.Unlock()
	if held != "" && s.cfg.Approvals != nil {
		_, err := s.cfg.Approvals.Decide(ctx, held, approval.Decision{Approve: true, By: by, Comment: "session resumed"})
		if err != nil && !errors.Is(err, approval.ErrDecided) {
			return fmt.Errorf("session resumed, but its held statement (request %s) could not be approved: %w", held, err)
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
