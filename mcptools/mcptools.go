// Package mcptools is sluice's MCP server for agents: database tools whose
// every statement goes through the gateway with the agent's own token, so
// each is decided, masked, held for approval and recorded like a psql
// session's. It holds no database credential: it talks to a local
// `sluice connect` port (in process), and sluice logs in for the agent.
package mcptools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// DB runs one statement through the gateway and returns what sluice let
// through. A refusal, a hold or a database error is a *StatementError.
type DB interface {
	Query(ctx context.Context, sql string, params []any, maxRows int) (*Result, error)
	// Dialect names the target's SQL ("postgres" or "mysql").
	Dialect() string
	Close() error
}

// Result is a statement's result as the agent sees it.
type Result struct {
	Columns []string    `json:"columns" jsonschema:"the result's column names, in order"`
	Rows    [][]*string `json:"rows" jsonschema:"the rows, each value as text as sluice returned it (masked values masked); null for SQL NULL"`
	// RowCount is the number of rows returned here.
	RowCount int `json:"row_count" jsonschema:"how many rows are in rows"`
	// Truncated: more rows came back than max_rows (or the gateway cut
	// the result: Notice says why).
	Truncated bool   `json:"truncated" jsonschema:"true when the result was cut: at max_rows, or by the gateway's guardrails"`
	Command   string `json:"command,omitempty" jsonschema:"the database's command tag, e.g. SELECT 3 or INSERT 0 1"`
	Notice    string `json:"notice,omitempty" jsonschema:"why the result was cut, when the gateway cut it"`
}

// StatementError is the database's (or sluice's) answer refusing a
// statement.
type StatementError struct {
	Code    string // SQLSTATE or MySQL error number
	Message string
}

func (e *StatementError) Error() string { return e.Message + " (" + e.Code + ")" }

// Config shapes the server.
type Config struct {
	Target  string
	DB      DB
	MaxRows int // default cap on rows per query
	Version string
	Logger  *slog.Logger
}

// QueryIn are the query tool's arguments.
type QueryIn struct {
	SQL     string `json:"sql" jsonschema:"one SQL statement in the target's dialect"`
	Params  []any  `json:"params,omitempty" jsonschema:"values for the statement's placeholders ($1, $2 … on PostgreSQL; ? on MySQL), in order"`
	MaxRows int    `json:"max_rows,omitempty" jsonschema:"return at most this many rows (default 100, at most 10000)"`
}

// ExplainIn are the explain tool's arguments.
type ExplainIn struct {
	SQL string `json:"sql" jsonschema:"the statement to explain (it is not run)"`
}

// SchemaIn names a schema (a database on MySQL).
type SchemaIn struct {
	Schema string `json:"schema,omitempty" jsonschema:"the schema (PostgreSQL) or database (MySQL); default public, or the connection's database"`
}

// TableIn names a table.
type TableIn struct {
	Schema string `json:"schema,omitempty" jsonschema:"the table's schema (PostgreSQL) or database (MySQL); default public, or the connection's database"`
	Table  string `json:"table" jsonschema:"the table's name"`
}

// NewServer returns the MCP server with sluice's database tools.
func NewServer(cfg Config) *mcp.Server {
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "sluice", Title: "sluice database gateway", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: fmt.Sprintf("Tools for the database target %q, through the sluice gateway. Every statement is checked by policy: "+
			"a refused statement returns an error naming the policy (do not retry it unchanged); some values come back masked by design; "+
			"a statement that needs a human's approval returns its request id — ask a human to approve it, then call the same tool again with the same statement.", cfg.Target),
	})
	t := &tools{cfg: cfg}
	mcp.AddTool(s, &mcp.Tool{Name: "query", Description: "Run one SQL statement on " + cfg.Target + " through the gateway and return its rows as JSON. " +
		"Values are as the gateway returned them (columns tagged as personal data are masked). A statement the policy refuses returns an error naming the policy; " +
		"one that needs approval returns the approval request's id.", Annotations: &mcp.ToolAnnotations{OpenWorldHint: ptr(false)}}, t.query)
	mcp.AddTool(s, &mcp.Tool{Name: "list_schemas", Description: "List the schemas (databases on MySQL) of " + cfg.Target + " that the gateway lets this agent see.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, t.listSchemas)
	mcp.AddTool(s, &mcp.Tool{Name: "list_tables", Description: "List the tables and views of one schema of " + cfg.Target + " that the gateway lets this agent see.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, t.listTables)
	mcp.AddTool(s, &mcp.Tool{Name: "describe_table", Description: "Describe a table's columns (name, type, nullable) on " + cfg.Target + ".",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, t.describeTable)
	mcp.AddTool(s, &mcp.Tool{Name: "explain", Description: "Show the database's plan for a statement on " + cfg.Target + " without running it (EXPLAIN).",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, t.explain)
	return s
}

func ptr[T any](v T) *T { return &v }

type tools struct{ cfg Config }

// requestID finds an approval request's id in sluice's message.
var requestID = regexp.MustCompile(`apr_[0-9a-f]{12}`)

// run runs a statement and turns sluice's answers into what an LLM can
// act on: a refusal names the policy; a hold names the request.
func (t *tools) run(ctx context.Context, sql string, params []any, maxRows int) (*Result, error) {
	res, err := t.cfg.DB.Query(ctx, sql, params, maxRows)
	var se *StatementError
	if errors.As(err, &se) {
		msg := se.Message
		switch {
		case requestID.MatchString(msg):
			id := requestID.FindString(msg)
			return nil, fmt.Errorf("approval pending: the statement needs a human's approval and was not run; request %s. "+
				"Ask a human to approve it (sluice approvals approve %s, or the approvals page), then call this tool again with the same statement. Gateway: %s", id, id, msg)
		case strings.Contains(msg, "sluice"):
			return nil, fmt.Errorf("refused by the gateway (%s): %s. Do not retry it unchanged", se.Code, msg)
		}
		return nil, fmt.Errorf("the database returned an error (%s): %s", se.Code, msg)
	}
	if err != nil {
		t.cfg.Logger.Warn("mcp query failed", "err", err)
		return nil, fmt.Errorf("the statement could not be run through the gateway: %w", err)
	}
	return res, nil
}

func (t *tools) query(ctx context.Context, _ *mcp.CallToolRequest, in QueryIn) (*mcp.CallToolResult, *Result, error) {
	if strings.TrimSpace(in.SQL) == "" {
		return nil, nil, errors.New("sql is empty")
	}
	n := in.MaxRows
	if n <= 0 {
		n = t.cfg.MaxRows
	}
	n = min(n, 10000)
	res, err := t.run(ctx, in.SQL, in.Params, n)
	return nil, res, err
}

func (t *tools) explain(ctx context.Context, _ *mcp.CallToolRequest, in ExplainIn) (*mcp.CallToolResult, *Result, error) {
	sql := strings.TrimSpace(in.SQL)
	if sql == "" {
		return nil, nil, errors.New("sql is empty")
	}
	if f := strings.Fields(strings.ToUpper(sql)); len(f) > 0 && (f[0] == "EXPLAIN" || f[0] == "ANALYZE" || f[0] == "ANALYSE" || strings.HasPrefix(f[0], "(")) {
		// EXPLAIN ANALYZE runs the statement: this tool only plans it.
		return nil, nil, errors.New("give the statement itself, without EXPLAIN or its options: the tool adds EXPLAIN and never runs it")
	}
	res, err := t.run(ctx, "EXPLAIN "+sql, nil, 10000)
	return nil, res, err
}

func (t *tools) listSchemas(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, *Result, error) {
	q := `SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND schema_name NOT LIKE 'pg\_temp%' AND schema_name NOT LIKE 'pg\_toast%' ORDER BY 1`
	if t.cfg.DB.Dialect() == "mysql" {
		q = `SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1`
	}
	res, err := t.run(ctx, q, nil, 10000)
	return nil, res, err
}

// schema is the schema a tool names, or the dialect's default.
func (t *tools) schema(s string) (string, any) {
	if t.cfg.DB.Dialect() == "mysql" {
		if s == "" {
			return "DATABASE()", nil
		}
		return "?", s
	}
	if s == "" {
		s = "public"
	}
	return "$1", s
}

func (t *tools) listTables(ctx context.Context, _ *mcp.CallToolRequest, in SchemaIn) (*mcp.CallToolResult, *Result, error) {
	ph, v := t.schema(in.Schema)
	q := "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = " + ph + " ORDER BY 1"
	var params []any
	if v != nil {
		params = []any{v}
	}
	res, err := t.run(ctx, q, params, 10000)
	return nil, res, err
}

func (t *tools) describeTable(ctx context.Context, _ *mcp.CallToolRequest, in TableIn) (*mcp.CallToolResult, *Result, error) {
	if in.Table == "" {
		return nil, nil, errors.New("table is required")
	}
	ph, v := t.schema(in.Schema)
	tp := "$2"
	if t.cfg.DB.Dialect() == "mysql" {
		tp = "?"
	}
	q := "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = " + ph + " AND table_name = " + tp + " ORDER BY ordinal_position"
	var params []any
	if v != nil {
		params = append(params, v)
	}
	params = append(params, in.Table)
	res, err := t.run(ctx, q, params, 10000)
	if err == nil && res.RowCount == 0 {
		return nil, nil, fmt.Errorf("no table %q visible in schema %q", in.Table, in.Schema)
	}
	return nil, res, err
}
