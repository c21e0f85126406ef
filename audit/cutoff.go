package audit

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// Unclosed is a session whose chain has no session_close.
type Unclosed struct {
	Session, Agent, Target string
	Last                   Event // its last sealed event
	// CutOff: the sluice that carried it is gone (stopped, crashed, or
	// silent past its heartbeat), so events after Last may be lost.
	// Otherwise the session is still open.
	CutOff bool
	Why    string
}

func (u Unclosed) String() string {
	state := "OPEN"
	if u.CutOff {
		state = "CUT OFF"
	}
	return fmt.Sprintf("%s session %s (agent %s, target %s): no session_close; last sealed event %d (%s, %s): %s",
		state, u.Session, u.Agent, u.Target, u.Last.Seq, u.Last.Kind, u.Last.Time.Format(time.RFC3339), u.Why)
}

// Beat is how often a running sluice records that it runs; one silent for
// staleBeats of them is taken for gone.
const (
	Beat       = 10 * time.Second
	staleBeats = 3
)

// FindUnclosed lists the sessions without session_close and says which
// were cut off: their instance stopped, or no longer runs (its process is
// gone on this host, or it has not beaten for three heartbeats).
func FindUnclosed(events []Event, instances map[string]Instance, now time.Time) []Unclosed {
	type sess struct {
		open, last Event
		closed     bool
	}
	byID := map[string]*sess{}
	var order []string
	for _, e := range events {
		s := byID[e.Session]
		if s == nil {
			s = &sess{}
			byID[e.Session] = s
			order = append(order, e.Session)
		}
		if e.Kind == KindSessionOpen {
			s.open = e
		}
		if e.Kind == KindSessionClose {
			s.closed = true
		}
		s.last = e
	}
	host, _ := os.Hostname()
	var out []Unclosed
	for _, id := range order {
		s := byID[id]
		if s.closed {
			continue
		}
		u := Unclosed{Session: id, Agent: s.last.Agent, Target: s.last.Target, Last: s.last}
		in, known := instances[s.open.Instance]
		switch {
		case !known:
			u.CutOff, u.Why = true, "the sluice that carried it is unknown (no instance recorded)"
		case !in.Stopped.IsZero():
			u.CutOff, u.Why = true, fmt.Sprintf("its sluice (instance %s) stopped at %s without closing it", in.ID, in.Stopped.Format(time.RFC3339))
		case in.Host == host && !processAlive(in.PID):
			u.CutOff, u.Why = true, fmt.Sprintf("its sluice (instance %s, pid %d on this host) is gone", in.ID, in.PID)
		case now.Sub(in.Beat) > staleBeats*Beat:
			u.CutOff, u.Why = true, fmt.Sprintf("its sluice (instance %s on %s) last beat at %s", in.ID, in.Host, in.Beat.Format(time.RFC3339))
		default:
			u.Why = fmt.Sprintf("its sluice (instance %s on %s) is running", in.ID, in.Host)
		}
		out = append(out, u)
	}
	return out
}

// processAlive reports whether a process of that pid exists on this host.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
