package approval

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// An agent's pause lives in the store every replica shares (guard.Agents
// reads it), so that it holds all of the agent's sessions, wherever they
// run, until a human resumes it.

// PauseAgent pauses agent; it reports whether it was running. A second
// pause keeps the first one's reason.
func (s *Store) PauseAgent(ctx context.Context, agent, reason, by string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO sluice_pauses (agent, reason, paused_by, since) VALUES (?, ?, ?, ?)
ON CONFLICT (agent) DO NOTHING`), agent, reason, by, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("cannot pause agent %s: %w", agent, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ResumeAgent resumes agent; it reports whether it was paused.
func (s *Store) ResumeAgent(ctx context.Context, agent string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind("DELETE FROM sluice_pauses WHERE agent = ?"), agent)
	if err != nil {
		return false, fmt.Errorf("cannot resume agent %s: %w", agent, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// AgentPause says why agent is paused and by whom ("" when it is not).
func (s *Store) AgentPause(ctx context.Context, agent string) (string, error) {
	var reason, by string
	err := s.db.QueryRowContext(ctx, s.db.Rebind("SELECT reason, paused_by FROM sluice_pauses WHERE agent = ?"), agent).Scan(&reason, &by)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot read agent %s's pause: %w", agent, err)
	}
	return reason + " (paused by " + by + ")", nil
}

// PendingPauseHolds lists the pending requests that hold an agent's
// statements because of its pause (the guardrails' policy): resuming the
// agent approves them, whichever replica holds them.
func (s *Store) PendingPauseHolds(ctx context.Context, agent string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind("SELECT id FROM sluice_approvals WHERE status = ? AND agent = ? AND policies LIKE ?"), Pending, agent, "%guardrails%")
	if err != nil {
		return nil, fmt.Errorf("cannot list agent %s's held statements: %w", agent, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
