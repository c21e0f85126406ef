// Package guard watches what an agent does within its role and stops it
// early: rate limits (statements per second, rows per minute, per session
// and per agent), and latency thresholds — so many slow statements or lock
// waits within a window — that pause the session, after which every
// statement needs a human's approval until someone resumes it.
//
// A Session is fed each statement's outcome as it completes (Done) and asked
// before each statement runs (Check); its counters go into the Cedar
// context, so policies can use them too.
package guard

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Limits are a target's guardrails; zero values are off.
type Limits struct {
	StatementTimeout    time.Duration // enforced in the database
	MaxRows             int64         // per result
	MaxBytes            int64         // per result
	StatementsPerSecond int64         // per session and per agent
	RowsPerMinute       int64         // per session and per agent
	// A statement slower than SlowerThan, or one that waited on a lock or
	// hit the statement timeout, is a strike; PauseAfter strikes within
	// Window pause the session.
	SlowerThan time.Duration
	PauseAfter int
	Window     time.Duration
}

// CutResult says why a result of rows rows and bytes bytes so far must be
// cut ("" while within the limits); the wire sessions end the result with
// this as the client's error.
func (l Limits) CutResult(rows, bytes int64) string {
	switch {
	case l.MaxRows > 0 && rows > l.MaxRows:
		return fmt.Sprintf("sluice: result cut after %d rows: guardrails.max_rows is %d; add a LIMIT or narrow the WHERE clause", l.MaxRows, l.MaxRows)
	case l.MaxBytes > 0 && bytes > l.MaxBytes:
		return fmt.Sprintf("sluice: result cut after %d rows: guardrails.max_bytes is %d bytes; select fewer columns or rows", rows-1, l.MaxBytes)
	}
	return ""
}

// Counters are a session's recent activity, as Cedar context.
type Counters struct {
	Statements            int64 // since the session began
	StatementsLastSecond  int64
	RowsLastMinute        int64
	Strikes               int64 // slow statements and lock waits within the window
	AgentStatementsSecond int64 // the agent's, across its sessions
	AgentRowsMinute       int64
	Paused                bool
}

// Outcome is how one statement went, for the counters.
type Outcome struct {
	Start, End time.Time
	Rows       int64
	// Waited: the statement waited on a lock past lock_timeout, deadlocked,
	// or was cancelled by the statement timeout.
	Waited bool
}

// events counts occurrences in a sliding window (one bucket per 1/10 of it).
type events struct {
	span    time.Duration
	buckets [10]int64
	start   [10]int64 // bucket i's start, in units of span/10 since the epoch
}

func (e *events) slot(now time.Time) (int, int64) {
	unit := now.UnixNano() / int64(e.span/10)
	return int(unit % 10), unit
}

func (e *events) add(now time.Time, n int64) {
	i, unit := e.slot(now)
	if e.start[i] != unit {
		e.start[i], e.buckets[i] = unit, 0
	}
	e.buckets[i] += n
}

func (e *events) sum(now time.Time) int64 {
	_, unit := e.slot(now)
	var total int64
	for i := range e.buckets {
		if unit-e.start[i] < 10 {
			total += e.buckets[i]
		}
	}
	return total
}

// window returns counters for span, or nil when span is zero.
func window(span time.Duration) *events {
	if span <= 0 {
		return nil
	}
	return &events{span: span}
}

// agent is one agent's activity across its sessions in this process.
type agent struct {
	mu         sync.Mutex
	sessions   int
	statements *events
	rows       *events
	resumed    time.Time // strikes before it no longer count
}

// Agents shares per-agent counters between sessions, and the agents'
// pauses: a pause belongs to the agent, not to one of its sessions.
type Agents struct {
	mu sync.Mutex
	m  map[string]*agent
	// store keeps pauses where every replica sees them (nil: this process
	// alone); pauses caches what it said, for pauseTTL.
	store  PauseStore
	pauses map[string]pauseState
}

// PauseStore keeps agents' pauses for every replica (the approvals store).
type PauseStore interface {
	// PauseAgent pauses agent; it reports whether it was running.
	PauseAgent(ctx context.Context, agent, reason, by string) (bool, error)
	// ResumeAgent resumes agent; it reports whether it was paused.
	ResumeAgent(ctx context.Context, agent string) (bool, error)
	// AgentPause says why agent is paused ("" when it is not).
	AgentPause(ctx context.Context, agent string) (string, error)
}

// pauseTTL is how long a replica trusts what the store said of a pause: a
// pause made elsewhere holds this agent's statements here within it.
const pauseTTL = time.Second

type pauseState struct {
	reason  string
	checked time.Time
}

// NewAgents returns an empty registry; store (may be nil) shares pauses.
func NewAgents(store PauseStore) *Agents {
	return &Agents{m: map[string]*agent{}, store: store, pauses: map[string]pauseState{}}
}

// Paused says why agent is paused ("" when it is not). A store that cannot
// answer counts as a pause: the gateway fails closed.
func (a *Agents) Paused(name string) string {
	now := time.Now()
	a.mu.Lock()
	p, ok := a.pauses[name]
	a.mu.Unlock()
	if ok && (a.store == nil || now.Sub(p.checked) < pauseTTL) {
		return p.reason
	}
	if a.store == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reason, err := a.store.AgentPause(ctx, name)
	if err != nil {
		reason = "the pause state cannot be read: " + err.Error()
	}
	a.mu.Lock()
	a.pauses[name] = pauseState{reason: reason, checked: now}
	a.mu.Unlock()
	return reason
}

// Pause pauses agent name; it reports whether it was running.
func (a *Agents) Pause(name, reason, by string) (bool, error) {
	was := a.Paused(name) == ""
	if !was && a.store == nil {
		return false, nil
	}
	if a.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if was, err = a.store.PauseAgent(ctx, name, reason, by); err != nil {
			return false, fmt.Errorf("cannot record the pause: %w", err)
		}
		if !was {
			reason = a.Paused(name) // keep the first pause's reason
		}
	}
	a.mu.Lock()
	a.pauses[name] = pauseState{reason: reason, checked: time.Now()}
	a.mu.Unlock()
	return was, nil
}

// Resume lets agent name run again; it reports whether it was paused.
func (a *Agents) Resume(name string) (bool, error) {
	was := a.Paused(name) != ""
	if a.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if was, err = a.store.ResumeAgent(ctx, name); err != nil {
			return false, fmt.Errorf("cannot record the resume: %w", err)
		}
	}
	a.mu.Lock()
	a.pauses[name] = pauseState{checked: time.Now()}
	ag := a.m[name]
	a.mu.Unlock()
	if ag != nil {
		ag.mu.Lock()
		ag.resumed = time.Now() // its sessions forget their strikes
		ag.mu.Unlock()
	}
	return was, nil
}

// Session is one session's guard.
type Session struct {
	limits Limits
	agents *Agents
	name   string
	agent  *agent

	mu         sync.Mutex
	statements int64
	perSecond  *events
	perMinute  *events
	strikes    []time.Time
}

// Open starts the guard of a session of agent name.
func (a *Agents) Open(name string, l Limits) *Session {
	a.mu.Lock()
	ag := a.m[name]
	if ag == nil {
		ag = &agent{statements: window(time.Second), rows: window(time.Minute)}
		a.m[name] = ag
	}
	ag.sessions++
	a.mu.Unlock()
	return &Session{limits: l, agents: a, name: name, agent: ag, perSecond: window(time.Second), perMinute: window(time.Minute)}
}

// Close ends the session; an agent without sessions is forgotten (its
// pause, kept in the store, is not).
func (s *Session) Close() {
	s.agents.mu.Lock()
	defer s.agents.mu.Unlock()
	if s.agent.sessions--; s.agent.sessions == 0 {
		delete(s.agents.m, s.name)
		if s.agents.store != nil {
			delete(s.agents.pauses, s.name)
		}
	}
}

// Limits returns the session's limits.
func (s *Session) Limits() Limits { return s.limits }

// Check is asked before a statement runs: an error refuses it (a rate limit
// is exceeded).
func (s *Session) Check(now time.Time) error {
	l := s.limits
	if l.StatementsPerSecond <= 0 && l.RowsPerMinute <= 0 {
		return nil // asked on every decision: no counting without limits
	}
	c := s.Counters(now)
	switch {
	case l.StatementsPerSecond > 0 && c.StatementsLastSecond >= l.StatementsPerSecond:
		return fmt.Errorf("rate limit: this session ran %d statements in the last second (guardrails.statements_per_second %d); slow down", c.StatementsLastSecond, l.StatementsPerSecond)
	case l.StatementsPerSecond > 0 && c.AgentStatementsSecond >= l.StatementsPerSecond:
		return fmt.Errorf("rate limit: agent %s ran %d statements in the last second across its sessions (guardrails.statements_per_second %d); slow down", s.name, c.AgentStatementsSecond, l.StatementsPerSecond)
	case l.RowsPerMinute > 0 && c.RowsLastMinute >= l.RowsPerMinute:
		return fmt.Errorf("rate limit: this session received %d rows in the last minute (guardrails.rows_per_minute %d)", c.RowsLastMinute, l.RowsPerMinute)
	case l.RowsPerMinute > 0 && c.AgentRowsMinute >= l.RowsPerMinute:
		return fmt.Errorf("rate limit: agent %s received %d rows in the last minute across its sessions (guardrails.rows_per_minute %d)", s.name, c.AgentRowsMinute, l.RowsPerMinute)
	}
	return nil
}

// Done counts a completed statement. When it is the strike that reaches the
// pause threshold, the agent pauses (all of its sessions, on every replica)
// and Done returns why.
func (s *Session) Done(o Outcome) (paused string) {
	s.agent.mu.Lock()
	s.agent.statements.add(o.End, 1)
	s.agent.rows.add(o.End, o.Rows)
	s.agent.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.statements++
	s.perSecond.add(o.End, 1)
	s.perMinute.add(o.End, o.Rows)
	l := s.limits
	if l.PauseAfter <= 0 {
		return ""
	}
	slow := l.SlowerThan > 0 && o.End.Sub(o.Start) >= l.SlowerThan
	if !slow && !o.Waited {
		return ""
	}
	s.strikes = append(s.strikes, o.End)
	s.trim(o.End)
	if len(s.strikes) < l.PauseAfter {
		return ""
	}
	why := fmt.Sprintf("%d statements slower than %s or waiting on locks within %s", len(s.strikes), l.SlowerThan, l.Window)
	s.mu.Unlock()
	was, err := s.agents.Pause(s.name, why, "sluice")
	s.mu.Lock()
	if err != nil {
		return "pause not recorded (" + err.Error() + "): " + why
	}
	if !was {
		return ""
	}
	return why
}

// trim drops strikes older than the window, or than the agent's last
// resume.
func (s *Session) trim(now time.Time) {
	s.agent.mu.Lock()
	resumed := s.agent.resumed
	s.agent.mu.Unlock()
	i := 0
	for i < len(s.strikes) && ((s.limits.Window > 0 && now.Sub(s.strikes[i]) > s.limits.Window) || !s.strikes[i].After(resumed)) {
		i++
	}
	s.strikes = s.strikes[i:]
}

// Paused says why the session's agent is paused ("" when it is not).
func (s *Session) Paused() string { return s.agents.Paused(s.name) }

// Pause pauses the session's agent (a human's request); it reports
// whether the agent was running.
func (s *Session) Pause(reason, by string) (bool, error) {
	return s.agents.Pause(s.name, reason, by)
}

// Resume lets the session's agent run again, its strikes forgotten; it
// reports whether the agent was paused.
func (s *Session) Resume() (bool, error) {
	s.mu.Lock()
	s.strikes = nil
	s.mu.Unlock()
	return s.agents.Resume(s.name)
}

// Counters snapshots the session's counters.
func (s *Session) Counters(now time.Time) Counters {
	s.agent.mu.Lock()
	as, ar := s.agent.statements.sum(now), s.agent.rows.sum(now)
	s.agent.mu.Unlock()
	paused := s.Paused() != ""
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trim(now)
	return Counters{
		Statements: s.statements, StatementsLastSecond: s.perSecond.sum(now), RowsLastMinute: s.perMinute.sum(now),
		Strikes: int64(len(s.strikes)), AgentStatementsSecond: as, AgentRowsMinute: ar, Paused: paused,
	}
}
