package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	cedargo "github.com/cedar-policy/cedar-go"

	"github.com/sluicedb/sluice/guard"
)

// Guard watches a session's behaviour (guard.Session).
type Guard interface {
	Counters(now time.Time) guard.Counters
	Check(now time.Time) error
	Paused() string
	Limits() guard.Limits
}

// GuardrailsPolicy names guardrail refusals and holds in decisions.
const GuardrailsPolicy = "guardrails"

// SetGuard makes the authorizer enforce a session's guardrails: settings
// the agent may not raise, rate limits, and pauses. Its counters become the
// Cedar context's session record.
func (a *Authorizer) SetGuard(g Guard) { a.guard = g }

// guarded applies rate limits and pauses to a policy decision. It runs on
// every decision, memoized or not: the counters change between statements.
func (a *Authorizer) guarded(d Decision) Decision {
	if a.guard == nil || d.Outcome != Allow {
		return d
	}
	if err := a.guard.Check(time.Now()); err != nil {
		return Decision{Outcome: Deny, Reason: err.Error(), Policies: []string{GuardrailsPolicy}, Kinds: d.Kinds, Tables: d.Tables}
	}
	if why := a.guard.Paused(); why != "" {
		d.Outcome = Approval
		d.Reason = "session paused (" + why + "): every statement needs approval until a human resumes the session"
		d.Policies = append(slices.Clone(d.Policies), GuardrailsPolicy)
	}
	return d
}

// sessionContext is the Cedar context's session record.
func sessionContext(c guard.Counters) cedargo.Value {
	return cedargo.NewRecord(cedargo.RecordMap{
		"statements":                   cedargo.Long(c.Statements),
		"statements_last_second":       cedargo.Long(c.StatementsLastSecond),
		"rows_last_minute":             cedargo.Long(c.RowsLastMinute),
		"slow_statements":              cedargo.Long(c.Strikes),
		"agent_statements_last_second": cedargo.Long(c.AgentStatementsSecond),
		"agent_rows_last_minute":       cedargo.Long(c.AgentRowsMinute),
		"paused":                       cedargo.Boolean(c.Paused),
	})
}

// timeoutSettings are the settings that hold a statement timeout, with the
// unit of a bare number.
var timeoutSettings = map[string]map[string]time.Duration{
	"postgres": {"statement_timeout": time.Millisecond},
	"mysql":    {"max_statement_time": time.Second, "max_execution_time": time.Millisecond},
}

// checkSettings refuses a SET that would raise or disable the statement
// timeout the guardrails hold. Lowering it is fine. On PostgreSQL, RESET
// returns to sluice's value (set at startup); on MySQL DEFAULT is the
// server's global value, so it is refused.
func (a *Authorizer) checkSettings(st Statement) error {
	if a.guard == nil {
		return nil
	}
	limit := a.guard.Limits().StatementTimeout
	if limit <= 0 {
		return nil
	}
	for _, s := range st.Settings {
		unit, ok := timeoutSettings[a.target.Protocol][s.Name]
		if !ok {
			continue
		}
		held := fmt.Sprintf("%s is held at %s by sluice's guardrails; an agent may lower it, not raise or disable it", s.Name, limit)
		switch {
		case s.Default && a.target.Protocol == "postgres":
			continue
		case s.Default:
			return fmt.Errorf("%s (DEFAULT would restore the server's value)", held)
		case s.Value == "":
			return fmt.Errorf("%s (its new value must be a constant)", held)
		}
		v, err := parseTimeout(s.Value, unit)
		if err != nil {
			return fmt.Errorf("%s (cannot read %q: %v)", held, s.Value, err)
		}
		if v == 0 || v > limit {
			return fmt.Errorf("%s: SET %s = %s refused", held, s.Name, s.Value)
		}
	}
	return nil
}

var timeoutValue = regexp.MustCompile(`^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$`)

// parseTimeout reads a timeout as the databases do: a number in unit, or
// (PostgreSQL) a number with one of us, ms, s, min, h, d.
func parseTimeout(text string, unit time.Duration) (time.Duration, error) {
	m := timeoutValue.FindStringSubmatch(strings.ToLower(text))
	if m == nil {
		return 0, fmt.Errorf("not a duration")
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	units := map[string]time.Duration{"": unit, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[m[2]]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", m[2])
	}
	d := f * float64(u)
	if d > float64(1<<62) {
		return 1 << 62, nil
	}
	return time.Duration(d), nil
}
