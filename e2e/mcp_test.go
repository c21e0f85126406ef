package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sluicedb/sluice/devstack"
)

// mcpSession starts `sluice mcp` for an agent in groups on the demo target
// and connects the MCP Go SDK's client to it over stdio.
func mcpSession(t *testing.T, sub string, groups []string, extra ...string) *mcp.ClientSession {
	t.Helper()
	args := []string{"mcp", "--gateway", stack.Config.Envoy.Listen, "--target", "demo",
		"--ca", stack.Config.Path("tls/ca.crt"), "--token-file", tokenFor(t, sub, groups), "--database", "sluice_demo"}
	cmd := exec.Command(stack.Binary, append(args, extra...)...) // a later --target wins
	client := mcp.NewClient(&mcp.Implementation{Name: "sluice-e2e", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// call runs a tool and returns its result's text and whether it is a tool
// error.
func call(t *testing.T, s *mcp.ClientSession, tool string, args map[string]any) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	if res.StructuredContent != nil {
		js, _ := json.Marshal(res.StructuredContent)
		b.WriteString("\n" + string(js))
	}
	return b.String(), res.IsError
}

// TestMCPToolsThroughTheGateway: the MCP server an agent runs, driven by
// the official Go SDK's client: tools/list shows the tools with their
// input schemas; query returns masked JSON; DROP TABLE is a tool error
// naming no-ddl; a statement held for approval returns its request id and,
// once a human approves it, the same call runs.
func TestMCPToolsThroughTheGateway(t *testing.T) {
	s := mcpSession(t, "mcp-agent", []string{"analysts"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tools, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
		schema, _ := json.Marshal(tl.InputSchema)
		if tl.Description == "" || !strings.Contains(string(schema), `"type":"object"`) {
			t.Errorf("tool %s: description %q, schema %s", tl.Name, tl.Description, schema)
		}
		if tl.Name == "query" && !strings.Contains(string(schema), `"sql"`) {
			t.Errorf("query's schema lacks sql: %s", schema)
		}
	}
	slices.Sort(names)
	if want := []string{"describe_table", "explain", "list_schemas", "list_tables", "query"}; !slices.Equal(names, want) {
		t.Fatalf("tools %v, want %v", names, want)
	}
	t.Logf("tools/list: %v", names)

	out, isErr := call(t, s, "query", map[string]any{"sql": "SELECT name, email, ssn FROM customers WHERE id = $1", "params": []any{3}})
	if isErr || !strings.Contains(out, `"Customer 3"`) || !strings.Contains(out, "@example.com") || strings.Contains(out, "customer3@") || strings.Contains(out, "003-45-6789") {
		t.Fatalf("masked query: %v %s", isErr, out)
	}
	t.Logf("query: %s", out)
	out, isErr = call(t, s, "query", map[string]any{"sql": "DROP TABLE customers"})
	if !isErr || !strings.Contains(out, "no-ddl") {
		t.Fatalf("DROP TABLE: %v %s", isErr, out)
	}
	t.Logf("DROP TABLE: %s", out)
	out, isErr = call(t, s, "describe_table", map[string]any{"table": "customers"})
	if isErr || !strings.Contains(out, `"email"`) {
		t.Fatalf("describe_table: %v %s", isErr, out)
	}
	out, isErr = call(t, s, "list_tables", map[string]any{})
	if isErr || !strings.Contains(out, `"customers"`) {
		t.Fatalf("list_tables: %v %s", isErr, out)
	}
	out, isErr = call(t, s, "explain", map[string]any{"sql": "SELECT name FROM customers WHERE id = 1"})
	if isErr || !strings.Contains(out, "Scan") {
		t.Fatalf("explain: %v %s", isErr, out)
	}

	seedItems(t, "mcp_items", 3)
	w := mcpSession(t, "mcp-writer", []string{"migrators", "careful", "async-agents"})
	del := map[string]any{"sql": "DELETE FROM mcp_items WHERE id = 2"}
	out, isErr = call(t, w, "query", del)
	id := requestID.FindString(out)
	if !isErr || id == "" || !strings.Contains(out, "approval pending") {
		t.Fatalf("held statement: %v %s", isErr, out)
	}
	t.Logf("held: %s", out)
	if o, err := approvals(t, tokenFor(t, "alice", []string{"dba"}), "approve", id); err != nil {
		t.Fatalf("approve: %v %s", err, o)
	}
	out, isErr = call(t, w, "query", del)
	if isErr || !strings.Contains(out, "DELETE 1") {
		t.Fatalf("after approval: %v %s", isErr, out)
	}
	t.Logf("after approval: %s", out)
}

// inspector runs the MCP Inspector's CLI mode (npm, installed by
// scripts/setup) against `sluice mcp` for a token file.
func inspector(t *testing.T, tokenFile string, args ...string) string {
	t.Helper()
	bin, err := filepath.Abs("../.tools/inspector/node_modules/.bin/mcp-inspector")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--cli", stack.Binary, "mcp", "--gateway", stack.Config.Envoy.Listen, "--target", "demo",
		"--ca", stack.Config.Path("tls/ca.crt"), "--token-file", tokenFile, "--database", "sluice_demo"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mcp-inspector %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestMCPInspectorCLI: the same flow from a published MCP client nobody
// here wrote, the MCP Inspector in CLI mode: tools/list, a masked query, a
// refused DROP TABLE, and an approval-held DELETE that runs once approved.
func TestMCPInspectorCLI(t *testing.T) {
	tok := tokenFor(t, "inspector-agent", []string{"analysts"})
	list := inspector(t, tok, "--method", "tools/list")
	for _, name := range []string{`"query"`, `"list_schemas"`, `"list_tables"`, `"describe_table"`, `"explain"`, `"inputSchema"`} {
		if !strings.Contains(list, name) {
			t.Errorf("tools/list lacks %s", name)
		}
	}
	q := inspector(t, tok, "--method", "tools/call", "--tool-name", "query", "--tool-arg", "sql=SELECT name, email FROM customers WHERE id = 2")
	if !strings.Contains(q, `"Customer 2"`) || !strings.Contains(q, "@example.com") || strings.Contains(q, "customer2@") {
		t.Fatalf("query:\n%s", q)
	}
	t.Logf("inspector query:\n%s", q)
	d := inspector(t, tok, "--method", "tools/call", "--tool-name", "query", "--tool-arg", "sql=DROP TABLE customers")
	if !strings.Contains(d, `"isError": true`) || !strings.Contains(d, "no-ddl") {
		t.Fatalf("DROP TABLE:\n%s", d)
	}
	t.Logf("inspector DROP TABLE:\n%s", d)
	seedItems(t, "inspector_items", 3)
	w := tokenFor(t, "inspector-writer", []string{"migrators", "careful", "async-agents"})
	del := []string{"--method", "tools/call", "--tool-name", "query", "--tool-arg", "sql=DELETE FROM inspector_items WHERE id = 3"}
	held := inspector(t, w, del...)
	id := requestID.FindString(held)
	if id == "" || !strings.Contains(held, "approval pending") {
		t.Fatalf("held:\n%s", held)
	}
	if o, err := approvals(t, tokenFor(t, "alice", []string{"dba"}), "approve", id); err != nil {
		t.Fatalf("approve: %v %s", err, o)
	}
	ran := inspector(t, w, del...)
	if !strings.Contains(ran, "DELETE 1") || strings.Contains(ran, `"isError": true`) {
		t.Fatalf("after approval:\n%s", ran)
	}
	t.Logf("inspector after approval of %s:\n%s", id, ran)
}

// TestMCPOnMySQLAndMongoDB: the same server on the MySQL target, and on
// the MongoDB target with its find, aggregate and list_collections tools.
func TestMCPOnMySQLAndMongoDB(t *testing.T) {
	my := mcpSession(t, "mcp-mysql", []string{"analysts"}, "--target", "demo-mysql", "--protocol", "mysql")
	out, isErr := call(t, my, "query", map[string]any{"sql": "SELECT name, email FROM customers WHERE id = ?", "params": []any{2}})
	if isErr || !strings.Contains(out, `"Customer 2"`) || !strings.Contains(out, "@example.com") || strings.Contains(out, "customer2@") {
		t.Fatalf("MySQL query: %v %s", isErr, out)
	}
	if out, isErr = call(t, my, "query", map[string]any{"sql": "DROP TABLE customers"}); !isErr || !strings.Contains(out, "no-ddl") {
		t.Fatalf("MySQL DROP TABLE: %v %s", isErr, out)
	}
	if out, isErr = call(t, my, "list_tables", map[string]any{}); isErr || !strings.Contains(out, `"customers"`) {
		t.Fatalf("MySQL list_tables: %v %s", isErr, out)
	}

	mg := mcpSession(t, "mcp-mongo", []string{"analysts"}, "--target", "demo-mongo", "--protocol", "mongodb")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tools, err := mg.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	if want := []string{"aggregate", "find", "list_collections"}; !slices.Equal(names, want) {
		t.Fatalf("MongoDB tools %v, want %v", names, want)
	}
	out, isErr = call(t, mg, "find", map[string]any{"collection": "customers", "filter": `{"city": "Oslo"}`, "sort": `{"_id": 1}`, "limit": 3})
	if isErr || !strings.Contains(out, "c***@example.com") || leaked.MatchString(out) || !strings.Contains(out, `"count":3`) {
		t.Fatalf("MongoDB find: %v %s", isErr, out)
	}
	t.Logf("find: %s", out)
	if out, isErr = call(t, mg, "find", map[string]any{"collection": "customers", "filter": `{"ssn": "001-45-6789"}`}); !isErr || !strings.Contains(out, "inference") {
		t.Fatalf("MongoDB find on ssn: %v %s", isErr, out)
	}
	if out, isErr = call(t, mg, "aggregate", map[string]any{"collection": "orders", "pipeline": `[{"$match": {"total_cents": {"$gt": 19000}}}, {"$project": {"total_cents": 1}}]`}); isErr || !strings.Contains(out, "total_cents") {
		t.Fatalf("MongoDB aggregate: %v %s", isErr, out)
	}
	if out, isErr = call(t, mg, "aggregate", map[string]any{"collection": "orders", "pipeline": `[{"$out": "copy"}]`}); !isErr || !strings.Contains(out, "refused by the gateway") {
		t.Fatalf("MongoDB $out: %v %s", isErr, out)
	}
	if out, isErr = call(t, mg, "list_collections", map[string]any{}); isErr || !strings.Contains(out, "customers") {
		t.Fatalf("MongoDB list_collections: %v %s", isErr, out)
	}
}

// TestMCPStreamableHTTP: `sluice mcp --http` serves the same tools over
// MCP's streamable HTTP transport.
func TestMCPStreamableHTTP(t *testing.T) {
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := devstack.StartProcess(stack.Dir, "mcp-http", stack.Binary, "mcp", "--gateway", stack.Config.Envoy.Listen, "--target", "demo",
		"--ca", stack.Config.Path("tls/ca.crt"), "--token-file", tokenFor(t, "mcp-http", []string{"analysts"}), "--database", "sluice_demo", "--http", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitTCP(ctx, addr); err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "sluice-e2e-http", Version: "1"}, nil)
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, isErr := call(t, s, "query", map[string]any{"sql": "SELECT name, email FROM customers WHERE id = 4"})
	if isErr || !strings.Contains(out, `"Customer 4"`) || strings.Contains(out, "customer4@") {
		t.Fatalf("query over HTTP: %v %s", isErr, out)
	}
}
