package mcptools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Mongo is a MongoDB target through a local connector address: the
// driver connects with no credentials (sluice logs in for the agent).
type Mongo struct {
	URI      string // mongodb://127.0.0.1:port/?directConnection=true
	Database string
	mu       sync.Mutex
	client   *mongo.Client
}

func (m *Mongo) db() (*mongo.Database, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client == nil {
		c, err := mongo.Connect(options.Client().ApplyURI(m.URI))
		if err != nil {
			return nil, err
		}
		m.client = c
	}
	return m.client.Database(m.Database), nil
}

// Close disconnects.
func (m *Mongo) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client == nil {
		return nil
	}
	return m.client.Disconnect(context.Background())
}

// MongoConfig shapes the MongoDB tools' server.
type MongoConfig struct {
	Target  string
	DB      *Mongo
	MaxDocs int
	Version string
	Logger  *slog.Logger
}

// FindIn are the find tool's arguments. Documents are MongoDB Extended
// JSON text, so that key order (a sort's) survives.
type FindIn struct {
	Collection string `json:"collection" jsonschema:"the collection to read"`
	Filter     string `json:"filter,omitempty" jsonschema:"the query filter as MongoDB Extended JSON text, e.g. {\"status\": \"open\"}; default {}"`
	Projection string `json:"projection,omitempty" jsonschema:"fields to return, as Extended JSON text, e.g. {\"name\": 1}"`
	Sort       string `json:"sort,omitempty" jsonschema:"sort order as Extended JSON text, e.g. {\"created\": -1}"`
	Limit      int    `json:"limit,omitempty" jsonschema:"return at most this many documents (default 20, at most 1000)"`
}

// AggregateIn are the aggregate tool's arguments.
type AggregateIn struct {
	Collection string `json:"collection" jsonschema:"the collection the pipeline starts from"`
	Pipeline   string `json:"pipeline" jsonschema:"the pipeline as MongoDB Extended JSON text: an array of stages, e.g. [{\"$group\": {\"_id\": \"$city\", \"n\": {\"$sum\": 1}}}]"`
	Limit      int    `json:"limit,omitempty" jsonschema:"return at most this many documents (default 20, at most 1000)"`
}

// Documents is what find and aggregate return.
type Documents struct {
	Documents []any `json:"documents" jsonschema:"the documents, as relaxed Extended JSON, masked fields masked"`
	Count     int   `json:"count"`
	Truncated bool  `json:"truncated"`
}

// NewMongoServer returns the MCP server with sluice's MongoDB tools.
func NewMongoServer(cfg MongoConfig) *mcp.Server {
	if cfg.MaxDocs <= 0 {
		cfg.MaxDocs = 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "sluice", Title: "sluice database gateway", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: fmt.Sprintf("Tools for the MongoDB target %q, through the sluice gateway. Every command is checked by policy: a refused one returns an error naming the policy; "+
			"fields tagged as personal data come back masked, and filtering or sorting on them is refused.", cfg.Target),
	})
	t := &mongoTools{cfg: cfg}
	mcp.AddTool(s, &mcp.Tool{Name: "find", Description: "Find documents in a collection of " + cfg.Target + " through the gateway; returns them as Extended JSON (relaxed), tagged fields masked.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, t.find)
	mcp.AddTool(s, &mcp.Tool{Name: "aggregate", Description: "Run an aggregation pipeline on a collection of " + cfg.Target + " through the gateway; stages that write ($out, $merge) or run code are refused unless a policy permits them.",
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: ptr(false)}}, t.aggregate)
	mcp.AddTool(s, &mcp.Tool{Name: "list_collections", Description: "List the collections of the database on " + cfg.Target + ".",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, t.listCollections)
	return s
}

type mongoTools struct{ cfg MongoConfig }

// extJSON reads Extended JSON text into v (a document or an array).
func extJSON(what, text string, v any) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	if err := bson.UnmarshalExtJSON([]byte(text), false, v); err != nil {
		return fmt.Errorf("%s is not valid Extended JSON: %w", what, err)
	}
	return nil
}

// mongoErr turns sluice's and the server's answers into what an LLM can
// act on.
func mongoErr(err error) error {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		switch {
		case requestID.MatchString(ce.Message):
			id := requestID.FindString(ce.Message)
			return fmt.Errorf("approval pending: the command needs a human's approval and was not run; request %s. Ask a human to approve it, then call this tool again with the same arguments. Gateway: %s", id, ce.Message)
		case strings.HasPrefix(ce.Message, "sluice"):
			return fmt.Errorf("refused by the gateway (code %d): %s. Do not retry it unchanged", ce.Code, ce.Message)
		}
		return fmt.Errorf("the database returned an error (code %d): %s", ce.Code, ce.Message)
	}
	return fmt.Errorf("the command could not be run through the gateway: %w", err)
}

func (t *mongoTools) limit(n int) int {
	if n <= 0 {
		n = t.cfg.MaxDocs
	}
	return min(n, 1000)
}

// collect reads up to n documents (one more tells whether there were more).
func collect(ctx context.Context, cur *mongo.Cursor, n int) (*Documents, error) {
	defer cur.Close(ctx)
	out := &Documents{Documents: []any{}}
	for cur.Next(ctx) {
		if len(out.Documents) >= n {
			out.Truncated = true
			break
		}
		js, err := bson.MarshalExtJSON(cur.Current, false, false)
		if err != nil {
			return nil, err
		}
		var doc any
		if err := json.Unmarshal(js, &doc); err != nil {
			return nil, err
		}
		out.Documents = append(out.Documents, doc)
	}
	if err := cur.Err(); err != nil {
		return nil, mongoErr(err)
	}
	out.Count = len(out.Documents)
	return out, nil
}

func (t *mongoTools) find(ctx context.Context, _ *mcp.CallToolRequest, in FindIn) (*mcp.CallToolResult, *Documents, error) {
	if in.Collection == "" {
		return nil, nil, errors.New("collection is required")
	}
	filter, proj, sort := bson.D{}, bson.D(nil), bson.D(nil)
	for _, x := range []struct {
		what, text string
		v          *bson.D
	}{{"filter", in.Filter, &filter}, {"projection", in.Projection, &proj}, {"sort", in.Sort, &sort}} {
		if err := extJSON(x.what, x.text, x.v); err != nil {
			return nil, nil, err
		}
	}
	db, err := t.cfg.DB.db()
	if err != nil {
		return nil, nil, err
	}
	n := t.limit(in.Limit)
	opts := options.Find().SetLimit(int64(n) + 1)
	if proj != nil {
		opts.SetProjection(proj)
	}
	if sort != nil {
		opts.SetSort(sort)
	}
	cur, err := db.Collection(in.Collection).Find(ctx, filter, opts)
	if err != nil {
		return nil, nil, mongoErr(err)
	}
	docs, err := collect(ctx, cur, n)
	return nil, docs, err
}

func (t *mongoTools) aggregate(ctx context.Context, _ *mcp.CallToolRequest, in AggregateIn) (*mcp.CallToolResult, *Documents, error) {
	if in.Collection == "" {
		return nil, nil, errors.New("collection is required")
	}
	var pipe bson.A
	if err := extJSON("pipeline", in.Pipeline, &pipe); err != nil {
		return nil, nil, err
	}
	db, err := t.cfg.DB.db()
	if err != nil {
		return nil, nil, err
	}
	cur, err := db.Collection(in.Collection).Aggregate(ctx, pipe)
	if err != nil {
		return nil, nil, mongoErr(err)
	}
	docs, err := collect(ctx, cur, t.limit(in.Limit))
	return nil, docs, err
}

// Collections is what list_collections returns.
type Collections struct {
	Collections []string `json:"collections"`
}

func (t *mongoTools) listCollections(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, *Collections, error) {
	db, err := t.cfg.DB.db()
	if err != nil {
		return nil, nil, err
	}
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, nil, mongoErr(err)
	}
	return nil, &Collections{Collections: names}, nil
}
