// Package session holds what the ext_proc server and the wire-protocol
// sessions share: who is connecting, to what, and what a session answers.
// It has no behaviour, so both sides can import it without a cycle.
package session

import (
	"fmt"

	"github.com/sluicedb/sluice/guard"
	"log/slog"
	"slices"
	"time"
)

// Identity is the authenticated agent behind a tunnel, taken from the JWT
// claims that Envoy's jwt_authn filter validated.
type Identity struct {
	Subject string   // the JWT sub claim
	Groups  []string // from the configured groups claim
	// ActingFor is the human the agent acts for (the act.sub claim).
	ActingFor string
	Claims    map[string]any // every claim, for policies and audit
	// Expiry is the token's exp: the session may not outlive it.
	Expiry time.Time
}

// Target is a configured database a tunnel may reach.
type Target struct {
	Name     string
	Protocol string // "postgres" or "mysql"
	Database string // when set, the only database a client may open
	Tags     map[string]string
	// Aliases are the other targets that reach the same database: column
	// tags belong to the data, so what is declared under any of them
	// applies under every one.
	Aliases []string
	// Logins are the database credentials sluice holds for this target,
	// least-privileged first. Empty: the client authenticates itself.
	Logins []Login
	// Login is the one chosen for this session's agent (nil: the client
	// authenticates itself).
	Login *Login
	// Guardrails bound what the agent may do within its role.
	Guardrails guard.Limits
}

// Login is a database user sluice authenticates as on an agent's behalf.
type Login struct {
	Groups   []string // agents in any of these groups; empty: any agent
	User     string
	Password Secret
}

// LoginFor picks the first login whose groups meet the agent's, so the
// least-privileged one listed first wins. A target without logins needs
// none (nil, nil); one with logins but none for these groups is an error.
func (t Target) LoginFor(groups []string) (*Login, error) {
	if len(t.Logins) == 0 {
		return nil, nil
	}
	for i := range t.Logins {
		l := &t.Logins[i]
		if len(l.Groups) == 0 || slices.ContainsFunc(l.Groups, func(g string) bool { return slices.Contains(groups, g) }) {
			return l, nil
		}
	}
	return nil, fmt.Errorf("target %q has no database login for groups %v", t.Name, groups)
}

// Secret is a credential. It prints, logs and marshals as "[redacted]";
// only Reveal gives the value, at the point of use.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON, YAML).
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Output collects what a session sends after consuming one chunk.
type Output struct {
	ToServer []byte
	ToClient []byte
	// Sensitive marks ToServer as credential material (a brokered login):
	// it reaches the database but no trace, log or recording.
	Sensitive bool
	// Hold names the approval request the session now holds a statement
	// for: the tunnel waits for its decision and calls Resume.
	Hold string
}

// Reset empties the output, keeping its buffers.
func (o *Output) Reset() {
	o.ToServer = o.ToServer[:0]
	o.ToClient = o.ToClient[:0]
	o.Sensitive = false
	o.Hold = ""
}

// HoldRequest is a statement whose policy outcome is "approval".
type HoldRequest struct {
	SQL      string
	Reason   string
	Policies []string
}

// Ticket is the approval service's answer to a HoldRequest.
type Ticket struct {
	ID      string
	Granted bool   // a human already approved it: run it now
	Hold    bool   // hold it until a human decides (then Resume)
	Message string // otherwise: refuse it, saying this (async pending, service down)
}

// Approvals lets a session ask for a human's approval. It is called in the
// data path, so it only records the request; waiting happens elsewhere.
type Approvals interface {
	Ask(r HoldRequest) Ticket
}

// Verdict ends a hold.
type Verdict struct {
	ID       string
	Approved bool
	Message  string // why not: denied by whom, timed out, …
	// Fatal ends the session (sluice is shutting down); the request stays
	// pending and may be approved for resubmission.
	Fatal bool
}

// Resumer is a session that can hold a statement for approval.
type Resumer interface {
	Resume(v Verdict, out *Output)
}

// Expirer is a session that can end itself when the agent's token expires:
// it writes a protocol error for the client and a hang-up for the server.
type Expirer interface {
	Expire(reason string, out *Output)
}

// Session is one database connection's wire-protocol state machine. It is fed
// the tunnel's bytes in order, chunk by chunk, and is not safe for concurrent use.
type Session interface {
	// FromClient consumes bytes the client sent toward the database.
	FromClient(data []byte, out *Output) error
	// FromServer consumes bytes the database sent toward the client.
	FromServer(data []byte, out *Output) error
}

// StatementRecord is how one statement went, for audit and telemetry.
type StatementRecord struct {
	SQL      string
	Outcome  string // allow, deny, approval (as decided before any approval)
	Reason   string
	Policies []string
	Masked   []string // result columns that came back masked
	Tables   []string // the relations it names
	Kinds    []string // its statements' kinds (select, create, …)
	Start    time.Time
	End      time.Time
	Rows     int64  // returned or affected, from the command tag
	Error    string // the error the client saw, if any
	Code     string // its SQLSTATE (PostgreSQL) or error number (MySQL)
	// Result is what the client received, as it saw it (masked values
	// masked), up to a bound; nil when the statement returned no rows.
	Result *Result
}

// Result is a recorded result set.
type Result struct {
	Columns []string    `json:"columns,omitempty"`
	Rows    [][]*string `json:"rows,omitempty"` // nil for SQL NULL
	// Truncated: more rows (or larger ones) reached the client than the
	// recording keeps.
	Truncated bool `json:"truncated,omitempty"`
}

// Observer receives each statement's record as it completes.
type Observer interface {
	Statement(r StatementRecord)
	// RecordsResults says whether records should carry the rows the
	// client received (a recording); decoding them is not free.
	RecordsResults() bool
}
