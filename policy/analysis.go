// Package policy turns SQL statements into Cedar requests and decides them.
//
// Analysis (what a statement does, parsed with the database's own grammar)
// is separate from the decision (a pure function of the analysis, the
// principal, the target and the loaded policy set), so both can be tested and
// cached on their own.
package policy

import (
	"fmt"
	"slices"
)

// ObjectKind is the kind of resource a request is about.
type ObjectKind int

const (
	ObjectTarget ObjectKind = iota // the database as a whole
	ObjectSchema
	ObjectTable
	ObjectFunction
	ObjectColumn
)

func (k ObjectKind) String() string {
	switch k {
	case ObjectSchema:
		return "schema"
	case ObjectTable:
		return "table"
	case ObjectFunction:
		return "function"
	case ObjectColumn:
		return "column"
	}
	return "target"
}

// Object is a database object a statement touches. Schema is empty for
// targets and for objects that are not schema-qualified in the database's
// model (functions are named by their unqualified name). A column is named
// by its table (Name) and Column.
type Object struct {
	Kind   ObjectKind
	Schema string
	Name   string
	Column string
}

func (o Object) String() string {
	switch o.Kind {
	case ObjectTarget:
		return "the database"
	case ObjectSchema:
		return "schema " + o.Name
	case ObjectFunction:
		return "function " + o.Name
	case ObjectColumn:
		return fmt.Sprintf("column %s.%s.%s", o.Schema, o.Name, o.Column)
	}
	return fmt.Sprintf("table %s.%s", o.Schema, o.Name)
}

// Request is one (action, object) pair a statement needs.
type Request struct {
	Action string
	Object Object
}

// Statement is what one SQL statement does.
type Statement struct {
	Kind     string // e.g. "select", "drop", "copy"
	Requests []Request
	// Outputs are the result columns returned to the client (SELECT,
	// RETURNING), each with the table columns its values derive from.
	Outputs []Output
	// Uses are columns whose values steer the statement without being
	// returned — filters, joins, ordering, grouping — or flow into a write.
	// A masked column here is an inference channel.
	Uses []Column
	// Lineage is false when columns could not be traced (no catalog).
	Lineage bool
	// Bounded is set for UPDATE and DELETE with a WHERE clause.
	Bounded bool
	// CopyFormat is the data format of a COPY ("text", "csv", "binary");
	// CopyOptions: it has options besides the format (DELIMITER, NULL, …);
	// CopyIn: COPY FROM STDIN (the client streams data in).
	CopyFormat  string
	CopyOptions bool
	CopyIn      bool
	// Settings are the session settings a SET, RESET or set_config
	// changes: sluice pins those that change how the server reads SQL, and
	// the guardrails hold the statement timeout.
	Settings []Setting
	// Effects are changes to session state the wire session follows once
	// the server confirms the statement (cursors, prepared statements, the
	// default database, lexical settings).
	Effects []Effect
}

// Setting is one session setting a statement changes.
type Setting struct {
	Name string // lower case; "" with Computed for set_config(expr, …)
	// Value is the new value as written (a constant); Default is set for
	// RESET and SET … TO DEFAULT; Computed means the value (or, without a
	// Name, the setting itself) is an expression sluice cannot know.
	Value    string
	Default  bool
	Computed bool
}

// Analysis is what a whole SQL string does: every statement in it.
type Analysis struct {
	Statements []Statement
	// Err is set when the SQL did not parse or holds something the analyzer
	// does not understand; such SQL is refused.
	Err error
}

// collector accumulates a statement's account; both analyzers embed it.
type collector struct {
	st Statement
}

func (c *collector) add(action string, o Object) {
	r := Request{Action: action, Object: o}
	for _, have := range c.st.Requests {
		if have == r {
			return
		}
	}
	c.st.Requests = append(c.st.Requests, r)
}

func (c *collector) use(cols ...Column) {
	for _, col := range cols {
		if !slices.Contains(c.st.Uses, col) {
			c.st.Uses = append(c.st.Uses, col)
		}
	}
}
