package policy

import "strings"

// Outcome is what happens to a statement.
type Outcome int

const (
	// Deny refuses the statement; it never reaches the database.
	Deny Outcome = iota
	// Allow forwards the statement.
	Allow
	// Approval: refused as is, but allowed once a human approves it.
	Approval
)

func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case Approval:
		return "approval"
	}
	return "deny"
}

// MaskedColumn is a result column whose values must be masked.
type MaskedColumn struct {
	Index   int      // position in the result
	Name    string   // as the database names it
	Sources []Column // the protected columns it derives from
	// Strategy is a mask strategy ("redact", "null", "partial:4", "token",
	// "email"), from the source columns' tags. In a part, "" shows the
	// part as it is (its own Parts may still mask inside it).
	Strategy string
	// Typed is the mask for values whose type is not text — numbers,
	// dates, timestamps, UUIDs: "null", "zero", "bucket" or "token".
	Typed string
	// Shape and Parts: the value is structured and only the parts that
	// derive from protected columns are masked, each by its own plan
	// (Name is a JSON key or a field name). A value that does not have
	// the shape is masked as a whole by Strategy, staying valid for its
	// type (a JSON value becomes a JSON string).
	Shape ShapeKind
	Parts []MaskedColumn
}

// Masks reports whether the part masks anything.
func (m MaskedColumn) Masks() bool { return m.Strategy != "" || len(m.Parts) > 0 }

// Decision is the verdict on one statement (all of its requests together).
type Decision struct {
	Outcome Outcome
	// Unparseable is set when the statement was refused because sluice could
	// not parse or did not understand it.
	Unparseable bool
	// Reason says, for a person, what was refused and why.
	Reason string
	// Policies are the ids of the policies that determined the decision:
	// the permits that allowed it, or the forbids that refused it. Empty for
	// a default deny (no policy permitted the request).
	Policies []string
	// Statement kinds in the statement, in order (for logs and audit).
	Kinds []string
	// Tables the statement names, schema-qualified, in order of first use
	// (for audit and traces' db.collection.name).
	Tables []string
	// Masked lists, per statement, the result columns to mask; Widths is
	// how many columns each statement's result has in sluice's analysis
	// (-1: unknown). A result of another width cannot be masked by index,
	// so the wire sessions refuse it rather than pass it.
	Masked [][]MaskedColumn
	Widths []int
	// CopyIn: a statement is COPY FROM STDIN (the client streams data).
	CopyIn bool
	// Protected: the statement reads values the agent may see only masked
	// (a masked result, or a masked column a policy lets it filter on).
	// The server's error messages and warnings about it may quote such a
	// value ("invalid input syntax for type integer: …"), so the wire
	// sessions withhold their text.
	Protected bool
	// Effects lists, per statement, the session state it changes (nil when
	// no statement changes any).
	Effects [][]Effect
	// Missing is the relation the statement names that does not exist (as
	// far as a fresh catalog read tells): the wire sessions answer with the
	// database's own error for it (42P01, MySQL 1146).
	Missing *UnknownRelationError
	// Shadow is set when the policy set only observes: Outcome is Allow and
	// WouldBe says what enforcement would have decided.
	Shadow  bool
	WouldBe Outcome
	// Unresolved names MongoDB collections (db.coll) the command reads
	// whose kind the session must learn from the server (a view reads
	// another collection) before it can be decided; Outcome is Deny.
	Unresolved []string
}

// Allowed reports whether the statement may run.
func (d Decision) Allowed() bool { return d.Outcome == Allow }

// PolicyList renders the policy ids for messages.
func (d Decision) PolicyList() string {
	if len(d.Policies) == 0 {
		return "none (default deny)"
	}
	return strings.Join(d.Policies, ", ")
}
