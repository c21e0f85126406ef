package approval

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the PostgreSQL channel decisions are announced on.
const notifyChannel = "sluice_approvals"

// Options configure a Service.
type Options struct {
	Logger *slog.Logger
	// Timeout bounds how long a held statement waits for a decision.
	Timeout time.Duration
	// Validity is how long a once-approval of a request whose statement is
	// no longer waiting (async mode, a restart) stays valid for resubmission.
	Validity time.Duration
	// WebhookURL receives a Slack-compatible message per new request.
	WebhookURL string
	// PageURL is the approvals page, linked from notifications.
	PageURL string
	// Poll is the fallback interval at which waiting statements re-read
	// their request (decisions made through another replica).
	Poll time.Duration
}

// Service creates requests, waits for decisions and records them.
type Service struct {
	store *Store
	opt   Options
	log   *slog.Logger
	http  *http.Client

	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

// NewService returns a service over store. On PostgreSQL it listens for
// other replicas' decisions until ctx ends.
func NewService(ctx context.Context, store *Store, opt Options) *Service {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Minute
	}
	if opt.Validity <= 0 {
		opt.Validity = 15 * time.Minute
	}
	if opt.Poll <= 0 {
		opt.Poll = 2 * time.Second
	}
	s := &Service{store: store, opt: opt, log: opt.Logger, http: &http.Client{Timeout: 10 * time.Second}, waiters: map[string][]chan struct{}{}}
	if store.db.Postgres {
		go s.listen(ctx)
	}
	return s
}

// Store returns the service's store.
func (s *Service) Store() *Store { return s.store }

// Timeout is how long a held statement waits.
func (s *Service) Timeout() time.Duration { return s.opt.Timeout }

// NewID returns a request id: short enough to type, random enough not to guess.
func NewID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "apr_" + hex.EncodeToString(b[:])
}

// TextHash identifies a statement's exact text.
func TextHash(sql string) string {
	h := sha256.Sum256([]byte(sql))
	return hex.EncodeToString(h[:12])
}

// Submit records a new pending request and notifies approvers.
func (s *Service) Submit(ctx context.Context, r *Request) error {
	if r.ID == "" {
		r.ID = NewID()
	}
	r.Status = Pending
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	if err := s.store.Insert(ctx, r); err != nil {
		return err
	}
	s.log.Info("approval requested", "id", r.ID, "agent", r.Agent, "acting_for", r.ActingFor, "target", r.Target,
		"fingerprint", r.Fingerprint, "policies", r.Policies, "mode", r.Mode)
	if s.opt.WebhookURL != "" {
		go s.notify(*r)
	}
	return nil
}

// Grant finds and uses an approval that lets the statement run now.
func (s *Service) Grant(ctx context.Context, agent, target, sql, fingerprint string) (*Request, error) {
	return s.store.Grant(ctx, agent, target, TextHash(sql), fingerprint, time.Now())
}

// Wait blocks until the request is decided, the timeout passes (the request
// is then expired) or ctx ends (the request stays pending). The returned
// request carries the final status.
func (s *Service) Wait(ctx context.Context, id string) (*Request, error) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.waiters[id] = append(s.waiters[id], ch)
	s.mu.Unlock()
	defer s.unwait(id, ch)
	deadline := time.NewTimer(s.opt.Timeout)
	defer deadline.Stop()
	poll := time.NewTicker(s.opt.Poll)
	defer poll.Stop()
	for {
		r, err := s.store.Get(ctx, id)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("cannot read approval request", "id", id, "err", err)
		}
		if r != nil && r.Status != Pending {
			if r.Status == Approved && r.Scope == ScopeOnce {
				if ok, err := s.store.Consume(ctx, id); err != nil || !ok {
					return nil, fmt.Errorf("approval %s was already used", id)
				}
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			err := s.store.Decide(context.WithoutCancel(ctx), id, Expired, "", time.Time{}, "", "timed out", time.Now())
			if errors.Is(err, ErrDecided) {
				continue // decided at the last moment: read it
			}
			if err != nil {
				return nil, err
			}
			return s.store.Get(context.WithoutCancel(ctx), id)
		case <-ch:
		case <-poll.C:
		}
	}
}

func (s *Service) unwait(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, id)
	} else {
		s.waiters[id] = ws
	}
}

func (s *Service) wake(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Decision is a human's answer to a request.
type Decision struct {
	Approve bool
	Scope   string        // ScopeOnce (default) or ScopeFingerprint
	For     time.Duration // a fingerprint approval's lifetime
	By      string        // the approver's subject
	Comment string
}

// Decide records a decision and wakes the statement waiting for it, here or
// on another replica.
func (s *Service) Decide(ctx context.Context, id string, d Decision) (*Request, error) {
	now := time.Now()
	status, scope := Denied, ""
	var valid time.Time
	if d.Approve {
		status, scope = Approved, d.Scope
		switch scope {
		case "", ScopeOnce:
			scope, valid = ScopeOnce, now.Add(s.opt.Validity)
		case ScopeFingerprint:
			if d.For <= 0 {
				return nil, errors.New("a fingerprint approval needs a duration")
			}
			valid = now.Add(d.For)
		default:
			return nil, fmt.Errorf("unknown scope %q (once or fingerprint)", d.Scope)
		}
	}
	if err := s.store.Decide(ctx, id, status, scope, valid, d.By, d.Comment, now); err != nil {
		return nil, err
	}
	s.log.Info("approval decided", "id", id, "status", status, "scope", scope, "by", d.By)
	s.wake(id)
	if s.store.db.Postgres {
		if _, err := s.store.db.ExecContext(ctx, "SELECT pg_notify($1, $2)", notifyChannel, id); err != nil {
			s.log.Warn("cannot notify other replicas; they will poll", "err", err)
		}
	}
	return s.store.Get(ctx, id)
}

// listen wakes local waiters on decisions made by other replicas.
func (s *Service) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := func() error {
			c, err := pgx.Connect(ctx, s.store.db.URL)
			if err != nil {
				return err
			}
			defer c.Close(context.WithoutCancel(ctx))
			if _, err := c.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
				return err
			}
			for {
				n, err := c.WaitForNotification(ctx)
				if err != nil {
					return err
				}
				s.wake(n.Payload)
			}
		}()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("approval notifications interrupted; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// notify posts a Slack-compatible message (text plus blocks) about a new
// request, with links to the page.
func (s *Service) notify(r Request) {
	link := strings.TrimSuffix(s.opt.PageURL, "/") + "/#request=" + r.ID
	who := r.Agent
	if r.ActingFor != "" {
		who += " (for " + r.ActingFor + ")"
	}
	text := fmt.Sprintf("sluice: %s asks to run on %s: %s — %s. Approve or deny: %s", who, r.Target, r.Statement, r.Reason, link)
	payload := map[string]any{
		"text": text,
		"blocks": []any{
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn",
				"text": fmt.Sprintf("*Approval request %s*\n*%s* on *%s* wants to run:\n```%s```\n%s", r.ID, who, r.Target, r.Statement, r.Reason)}},
			map[string]any{"type": "actions", "elements": []any{
				map[string]any{"type": "button", "text": map[string]any{"type": "plain_text", "text": "Review"}, "url": link},
			}},
		},
		"sluice_request": r,
	}
	b, _ := json.Marshal(payload)
	resp, err := s.http.Post(s.opt.WebhookURL, "application/json", bytes.NewReader(b))
	if err != nil {
		s.log.Warn("approval webhook failed", "id", r.ID, "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.log.Warn("approval webhook refused", "id", r.ID, "status", resp.Status)
	}
}

// PauseHolds lists the pending requests holding agent's statements
// because of its pause.
func (s *Service) PauseHolds(ctx context.Context, agent string) ([]string, error) {
	return s.store.PendingPauseHolds(ctx, agent)
}
