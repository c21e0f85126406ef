// Package approval is sluice's just-in-time approval: a statement whose
// policy outcome is "approval" is held (or refused as pending, in async
// mode) while a human decides. Requests and decisions live in a Store — the
// embedded SQLite by default, PostgreSQL for several replicas — and the
// replica holding a statement learns of the decision promptly (in process,
// by LISTEN/NOTIFY on PostgreSQL, and by polling as a fallback).
package approval

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicedb/sluice/sqlstore"
)

// Status of a request.
const (
	Pending  = "pending"
	Approved = "approved"
	Denied   = "denied"
	Expired  = "expired" // nobody decided within the hold timeout
)

// Scopes of an approval.
const (
	ScopeOnce        = "once"        // this statement text, once
	ScopeFingerprint = "fingerprint" // any statement of this fingerprint, until ValidUntil
)

// Request is one statement awaiting, or having had, a human's decision.
type Request struct {
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	Agent       string    `json:"agent"`
	ActingFor   string    `json:"acting_for,omitempty"`
	Target      string    `json:"target"`
	Session     string    `json:"session"`
	Statement   string    `json:"statement"`
	TextHash    string    `json:"text_hash"`
	Fingerprint string    `json:"fingerprint"`
	Policies    []string  `json:"policies"`
	Reason      string    `json:"reason"`
	Mode        string    `json:"mode"` // hold or async
	Status      string    `json:"status"`
	Scope       string    `json:"scope,omitempty"`
	ValidUntil  time.Time `json:"valid_until,omitzero"`
	DecidedBy   string    `json:"decided_by,omitempty"`
	DecidedAt   time.Time `json:"decided_at,omitzero"`
	Comment     string    `json:"comment,omitempty"`
}

// ErrNotFound: no request has that id.
var ErrNotFound = errors.New("no such approval request")

// ErrDecided: the request is no longer pending.
var ErrDecided = errors.New("the request was already decided")

// Store keeps requests in SQLite or PostgreSQL.
type Store struct {
	db *sqlstore.DB
}

// Open opens the store at url: a postgres:// URL, or a SQLite file path
// (optionally sqlite://path). The table is created if missing.
func Open(ctx context.Context, url string) (*Store, error) {
	db, err := sqlstore.Open(url)
	if err != nil {
		return nil, fmt.Errorf("cannot open approval store: %w", err)
	}
	s := &Store{db: db}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS sluice_approvals (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  agent TEXT NOT NULL,
  acting_for TEXT NOT NULL,
  target TEXT NOT NULL,
  session TEXT NOT NULL,
  statement TEXT NOT NULL,
  text_hash TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  policies TEXT NOT NULL,
  reason TEXT NOT NULL,
  mode TEXT NOT NULL,
  status TEXT NOT NULL,
  scope TEXT NOT NULL DEFAULT '',
  valid_until BIGINT NOT NULL DEFAULT 0,
  decided_by TEXT NOT NULL DEFAULT '',
  decided_at BIGINT NOT NULL DEFAULT 0,
  comment TEXT NOT NULL DEFAULT '',
  used INTEGER NOT NULL DEFAULT 0
)`); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("cannot create approval table: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS sluice_pauses (
  agent TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  paused_by TEXT NOT NULL,
  since BIGINT NOT NULL
)`); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("cannot create pause table: %w", err)
	}
	return s, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// Insert records a new pending request.
func (s *Store) Insert(ctx context.Context, r *Request) error {
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO sluice_approvals
(id, created_at, agent, acting_for, target, session, statement, text_hash, fingerprint, policies, reason, mode, status)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.ID, ms(r.CreatedAt), r.Agent, r.ActingFor, r.Target, r.Session, r.Statement, r.TextHash, r.Fingerprint,
		strings.Join(r.Policies, ","), r.Reason, r.Mode, r.Status)
	if err != nil {
		return fmt.Errorf("cannot record approval request: %w", err)
	}
	return nil
}

const columns = `id, created_at, agent, acting_for, target, session, statement, text_hash, fingerprint, policies, reason, mode, status, scope, valid_until, decided_by, decided_at, comment`

func scan(row interface{ Scan(...any) error }) (*Request, error) {
	var r Request
	var created, valid, decided int64
	var policies string
	if err := row.Scan(&r.ID, &created, &r.Agent, &r.ActingFor, &r.Target, &r.Session, &r.Statement, &r.TextHash, &r.Fingerprint,
		&policies, &r.Reason, &r.Mode, &r.Status, &r.Scope, &valid, &r.DecidedBy, &decided, &r.Comment); err != nil {
		return nil, err
	}
	r.CreatedAt, r.ValidUntil, r.DecidedAt = fromMS(created), fromMS(valid), fromMS(decided)
	if policies != "" {
		r.Policies = strings.Split(policies, ",")
	}
	return &r, nil
}

// Get returns one request.
func (s *Store) Get(ctx context.Context, id string) (*Request, error) {
	r, err := scan(s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT `+columns+` FROM sluice_approvals WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read approval request: %w", err)
	}
	return r, nil
}

// List returns requests, newest first; status "" lists all.
func (s *Store) List(ctx context.Context, status string, limit int) ([]*Request, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT `+columns+` FROM sluice_approvals WHERE (? = '' OR status = ?) ORDER BY created_at DESC LIMIT ?`), status, status, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list approval requests: %w", err)
	}
	defer rows.Close()
	var out []*Request
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("cannot read approval request: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Decide moves a pending request to status; it fails with ErrDecided if
// someone decided first.
func (s *Store) Decide(ctx context.Context, id, status, scope string, validUntil time.Time, by, comment string, now time.Time) error {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE sluice_approvals SET status = ?, scope = ?, valid_until = ?, decided_by = ?, decided_at = ?, comment = ?
WHERE id = ? AND status = 'pending'`), status, scope, ms(validUntil), by, ms(now), comment, id)
	if err != nil {
		return fmt.Errorf("cannot record the decision: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Get(ctx, id); err != nil {
			return err
		}
		return ErrDecided
	}
	return nil
}

// Consume uses a once-scoped approval: true if this caller used it first.
func (s *Store) Consume(ctx context.Context, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE sluice_approvals SET used = 1 WHERE id = ? AND used = 0`), id)
	if err != nil {
		return false, fmt.Errorf("cannot use the approval: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Grant finds an approval that lets this statement run now: an unused
// once-approval of the same text, or a fingerprint approval still valid,
// for the same agent and target. A once-approval is consumed.
func (s *Store) Grant(ctx context.Context, agent, target, textHash, fingerprint string, now time.Time) (*Request, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT `+columns+` FROM sluice_approvals
WHERE status = 'approved' AND agent = ? AND target = ? AND valid_until > ?
  AND ((scope = 'once' AND used = 0 AND text_hash = ?) OR (scope = 'fingerprint' AND fingerprint = ?))
ORDER BY decided_at`), agent, target, ms(now), textHash, fingerprint)
	if err != nil {
		return nil, fmt.Errorf("cannot look up approvals: %w", err)
	}
	var found []*Request
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		found = append(found, r)
	}
	rows.Close()
	for _, r := range found {
		if r.Scope == ScopeFingerprint {
			return r, nil
		}
		if ok, err := s.Consume(ctx, r.ID); err != nil {
			return nil, err
		} else if ok {
			return r, nil
		}
	}
	return nil, nil
}
