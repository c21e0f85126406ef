package guard

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func stmt(at time.Time, took time.Duration, rows int64) Outcome {
	return Outcome{Start: at, End: at.Add(took), Rows: rows}
}

// Three strikes within the window pause the session; strikes older than
// the window do not count; Resume forgets them.
func TestPauseAfterStrikesWithinWindow(t *testing.T) {
	a := NewAgents(nil)
	s := a.Open("bot", Limits{SlowerThan: 2 * time.Second, PauseAfter: 3, Window: 5 * time.Minute})
	defer s.Close()
	if why := s.Done(stmt(t0, 3*time.Second, 1)); why != "" {
		t.Fatal("paused after one strike")
	}
	s.Done(stmt(t0.Add(time.Second), 100*time.Millisecond, 1)) // fast: no strike
	// The first strike falls out of the window before the third arrives.
	s.Done(stmt(t0.Add(4*time.Minute), 3*time.Second, 1))
	if why := s.Done(stmt(t0.Add(6*time.Minute), 3*time.Second, 1)); why != "" {
		t.Fatalf("paused with a strike outside the window: %s", why)
	}
	// A lock wait is a strike however short.
	why := s.Done(Outcome{Start: t0.Add(7 * time.Minute), End: t0.Add(7 * time.Minute), Waited: true})
	if !strings.Contains(why, "3 statements slower than 2s or waiting on locks within 5m0s") || s.Paused() != why {
		t.Fatalf("not paused at the third strike: %q", why)
	}
	if c := s.Counters(t0.Add(7 * time.Minute)); !c.Paused || c.Strikes != 3 || c.Statements != 5 {
		t.Fatalf("counters: %+v", c)
	}
	if again := s.Done(stmt(t0.Add(8*time.Minute), 3*time.Second, 1)); again != "" {
		t.Fatal("a paused session tripped again")
	}
	if was, err := s.Resume(); !was || err != nil || s.Paused() != "" || s.Counters(t0.Add(8*time.Minute)).Strikes != 0 {
		t.Fatal("resume did not clear the pause and strikes")
	}
	if was, _ := s.Resume(); was {
		t.Fatal("resumed a running session")
	}
	if was, _ := s.Pause("by hand", "alice"); !was {
		t.Fatal("a human's pause")
	}
	if was, _ := s.Pause("again", "bob"); was || s.Paused() != "by hand" {
		t.Fatal("a second pause replaced the first")
	}
}

// memPauses is a PauseStore shared by two registries, as replicas share
// the approvals store.
type memPauses struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *memPauses) PauseAgent(_ context.Context, agent, reason, _ string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[agent] != "" {
		return false, nil
	}
	p.m[agent] = reason
	return true, nil
}

func (p *memPauses) ResumeAgent(_ context.Context, agent string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.m[agent] != ""
	delete(p.m, agent)
	return was, nil
}

func (p *memPauses) AgentPause(_ context.Context, agent string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[agent], nil
}

// A pause belongs to the agent: every session of it, a session opened
// afterwards, and the sessions another replica carries.
func TestPauseHoldsEveryAgentSession(t *testing.T) {
	store := &memPauses{m: map[string]string{}}
	here, there := NewAgents(store), NewAgents(store)
	l := Limits{SlowerThan: time.Second, PauseAfter: 1}
	s1 := here.Open("bot", l)
	defer s1.Close()
	if why := s1.Done(stmt(t0, 2*time.Second, 1)); why == "" {
		t.Fatal("no pause")
	}
	s2 := here.Open("bot", l)
	defer s2.Close()
	if s2.Paused() == "" {
		t.Fatal("a new session of the paused agent runs")
	}
	remote := there.Open("bot", l)
	defer remote.Close()
	if remote.Paused() == "" {
		t.Fatal("the paused agent runs on another replica")
	}
	if other := here.Open("other", l); other.Paused() != "" {
		t.Fatal("another agent is paused")
	}
	if was, err := remote.Resume(); !was || err != nil {
		t.Fatalf("resume from the other replica: %v %v", was, err)
	}
	time.Sleep(pauseTTL + 100*time.Millisecond) // what a replica trusts of the store
	if s1.Paused() != "" || s2.Paused() != "" {
		t.Fatal("resumed elsewhere, still paused here")
	}
}

// Rate limits count the last second's statements and the last minute's
// rows, per session and across an agent's sessions.
func TestRateLimits(t *testing.T) {
	a := NewAgents(nil)
	l := Limits{StatementsPerSecond: 3, RowsPerMinute: 100}
	s1, s2 := a.Open("bot", l), a.Open("bot", l)
	other := a.Open("other", l)
	defer other.Close()
	now := t0
	s1.Done(stmt(now, 0, 1))
	s1.Done(stmt(now, 0, 1))
	if err := s1.Check(now); err != nil {
		t.Fatalf("2 statements: %v", err)
	}
	s2.Done(stmt(now, 0, 1))
	if err := s2.Check(now); err == nil || !strings.Contains(err.Error(), "agent bot ran 3 statements in the last second across its sessions") {
		t.Fatalf("agent rate: %v", err)
	}
	if err := other.Check(now); err != nil {
		t.Fatalf("another agent is limited by bot's rate: %v", err)
	}
	s1.Done(stmt(now, 0, 1))
	if err := s1.Check(now); err == nil || !strings.Contains(err.Error(), "this session ran 3 statements in the last second") {
		t.Fatalf("session rate: %v", err)
	}
	later := now.Add(1500 * time.Millisecond)
	if err := s1.Check(later); err != nil {
		t.Fatalf("a second later: %v", err)
	}
	s1.Done(stmt(later, 0, 97))
	if err := s1.Check(later); err == nil || !strings.Contains(err.Error(), "received 100 rows in the last minute") {
		t.Fatalf("rows: %v", err)
	}
	if err := s1.Check(later.Add(61 * time.Second)); err != nil {
		t.Fatalf("a minute later: %v", err)
	}
	s1.Close()
	s2.Close()
	if len(a.m) != 1 {
		t.Fatalf("agents without sessions are kept: %d", len(a.m))
	}
}
