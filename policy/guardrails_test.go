package policy

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sluicedb/sluice/cedar"
	"github.com/sluicedb/sluice/extproc/session"
	"github.com/sluicedb/sluice/guard"
)

type fakeGuard struct {
	limits   guard.Limits
	counters guard.Counters
	rate     error
	paused   string
}

func (g *fakeGuard) Counters(time.Time) guard.Counters { return g.counters }
func (g *fakeGuard) Check(time.Time) error             { return g.rate }
func (g *fakeGuard) Paused() string                    { return g.paused }
func (g *fakeGuard) Limits() guard.Limits              { return g.limits }

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		unit time.Duration
		want time.Duration
	}{
		{"0", time.Millisecond, 0}, {"3000", time.Millisecond, 3 * time.Second}, {"5s", time.Millisecond, 5 * time.Second},
		{"2min", time.Millisecond, 2 * time.Minute}, {"1h", time.Millisecond, time.Hour}, {" 250 ms ", time.Millisecond, 250 * time.Millisecond},
		{"1.5", time.Second, 1500 * time.Millisecond}, {"1d", time.Millisecond, 24 * time.Hour}, {"1e3", time.Millisecond, time.Second},
	} {
		if got, err := parseTimeout(tc.in, tc.unit); err != nil || got != tc.want {
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "fast", "5 weeks", "-1"} {
		if _, err := parseTimeout(bad, time.Millisecond); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// The statement timeout the guardrails hold may be lowered, not raised,
// disabled or (on MySQL) reset to the server's value.
func TestSettingsCannotRaiseTheTimeout(t *testing.T) {
	pg := defaultEngine(t).Session(session.Identity{Subject: "r", Groups: []string{"analysts"}}, demo)
	pg.SetGuard(&fakeGuard{limits: guard.Limits{StatementTimeout: 30 * time.Second}})
	for sql, ok := range map[string]bool{
		"SET statement_timeout = 0": false, "SET statement_timeout TO '1h'": false, "SET SESSION statement_timeout = 31000": false,
		"SET LOCAL statement_timeout = '31s'": false, "SET statement_timeout = '10s'": true, "SET statement_timeout = 5000": true,
		"RESET statement_timeout": true, "SET statement_timeout TO DEFAULT": true, "RESET ALL": true, "SET work_mem = '64MB'": true,
	} {
		d := pg.AuthorizeSQL(sql)
		if d.Allowed() != ok {
			t.Errorf("%s: allowed=%v (%s)", sql, d.Allowed(), d.Reason)
		}
		if !ok && (d.PolicyList() != GuardrailsPolicy || !strings.Contains(d.Reason, "statement_timeout is held at 30s")) {
			t.Errorf("%s: %+v", sql, d)
		}
	}
	my := defaultEngine(t).Session(session.Identity{Subject: "r", Groups: []string{"analysts"}}, session.Target{Name: "m", Protocol: "mysql"})
	my.SetGuard(&fakeGuard{limits: guard.Limits{StatementTimeout: 30 * time.Second}})
	for sql, ok := range map[string]bool{
		"SET SESSION max_statement_time = 0": false, "SET max_statement_time = DEFAULT": false, "SET max_statement_time = 60": false,
		"SET max_execution_time = 31000": false, "SET max_statement_time = 1.5": true, "SET max_execution_time = 1000": true,
		"SET @max_statement_time = 0": true, // a user variable
	} {
		if d := my.AuthorizeSQL(sql); d.Allowed() != ok {
			t.Errorf("mysql %s: allowed=%v (%s)", sql, d.Allowed(), d.Reason)
		}
	}
}

// A paused session's allowed statements need approval; refused ones stay
// refused; a rate limit refuses.
func TestPauseAndRateLimitDecisions(t *testing.T) {
	a := defaultEngine(t).Session(session.Identity{Subject: "r", Groups: []string{"analysts"}}, demo)
	g := &fakeGuard{}
	a.SetGuard(g)
	if !a.AuthorizeSQL("SELECT * FROM orders").Allowed() {
		t.Fatal("read refused")
	}
	g.paused = "3 slow statements"
	d := a.AuthorizeSQL("SELECT * FROM orders") // memoized: the pause still applies
	if d.Outcome != Approval || !strings.Contains(d.Reason, "session paused (3 slow statements)") || d.Policies[len(d.Policies)-1] != GuardrailsPolicy {
		t.Fatalf("paused: %+v", d)
	}
	if d := a.AuthorizeSQL("DROP TABLE orders"); d.Outcome != Deny {
		t.Fatalf("a refused statement in a paused session: %+v", d)
	}
	g.paused, g.rate = "", errors.New("rate limit: too fast")
	if d := a.AuthorizeSQL("SELECT * FROM orders"); d.Outcome != Deny || d.Reason != "rate limit: too fast" {
		t.Fatalf("rate limited: %+v", d)
	}
}

// Policies can use the session's counters; their decisions are then not
// memoized.
func TestCountersReachCedar(t *testing.T) {
	set, err := cedar.Load(fstest.MapFS{"p.cedar": {Data: []byte(`
@id("read") permit (principal, action in [Sluice::Action::"select", Sluice::Action::"read_unmasked"], resource);
@id("bulk-readers-slow-down") forbid (principal, action in Sluice::Action::"read", resource) when { context.session.rows_last_minute > 1000 };`)}})
	if err != nil {
		t.Fatal(err)
	}
	if !set.UsesSession {
		t.Fatal("the set's use of context.session was not noticed")
	}
	a := NewEngine(set).Session(session.Identity{Subject: "r"}, demo)
	g := &fakeGuard{}
	a.SetGuard(g)
	if d := a.AuthorizeSQL("SELECT * FROM orders"); !d.Allowed() {
		t.Fatalf("refused with no rows read: %+v", d)
	}
	g.counters.RowsLastMinute = 5000
	if d := a.AuthorizeSQL("SELECT * FROM orders"); d.Allowed() || d.PolicyList() != "bulk-readers-slow-down" {
		t.Fatalf("after 5000 rows: %+v", d)
	}
	plain, err := cedar.Default()
	if err != nil || plain.UsesSession {
		t.Fatalf("default set uses the session: %v", err)
	}
}
