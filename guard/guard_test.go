package guard

import (
	"strings"
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
	a := NewAgents()
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
	if !s.Resume() || s.Paused() != "" || s.Counters(t0.Add(8*time.Minute)).Strikes != 0 {
		t.Fatal("resume did not clear the pause and strikes")
	}
	if s.Resume() {
		t.Fatal("resumed a running session")
	}
	if !s.Pause("by hand") || s.Pause("again") || s.Paused() != "by hand" {
		t.Fatal("a human's pause")
	}
}

// Rate limits count the last second's statements and the last minute's
// rows, per session and across an agent's sessions.
func TestRateLimits(t *testing.T) {
	a := NewAgents()
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
